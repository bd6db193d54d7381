"""`GET /health`: whether the service and its database answer."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud.api.deps import SessionDep
from cloud.api.schemas import HealthPublic
from cloud.services import queries

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database does not answer"}},
)
def health(session: SessionDep, response: Response) -> HealthPublic:
    """Report whether the database is reachable (open: no API key)."""
    ok = queries.database_ok(session=session)
    if not ok:
        # A load balancer takes a replica that cannot reach the database out of rotation.
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthPublic(status="ok" if ok else "degraded", database=ok)
