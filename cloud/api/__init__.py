"""The cloud's HTTP API (FastAPI, under `/api/v1`): `create_app(settings, engine=...)`."""

from cloud.api.app import create_app

__all__ = ["create_app"]
