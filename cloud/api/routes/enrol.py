"""`/enrol`: a cabinet trades its one-time enrolment code for its credentials and config."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import error_responses
from cloud.services import enrolment

router = APIRouter(tags=["enrolment"])


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1,
        max_length=64,
        description="The enrolment code as printed (dashes and spaces are ignored).",
        examples=["K7QF-2MXA-..."],
    )


class EnrolMqttPublic(BaseModel):
    username: str = Field(description="The broker user: the cabinet id (also its client id).")
    password: str = Field(description="The broker password; shown this once.")


class EnrolConfigPublic(BaseModel):
    version: int
    sha256: str = Field(description="SHA-256 of the body's canonical JSON (protocol.config_push).")
    body: dict[str, Any] = Field(description="Layout, buses, boards, screen and broker settings.")


class EnrolmentPublic(BaseModel):
    cabinet_id: str
    code_key: str = Field(description="The pickup-code key (hex text): keep it 0600.")
    mqtt: EnrolMqttPublic
    config: EnrolConfigPublic


@router.post(
    "/enrol",
    responses=error_responses(404, 422, 429),
    summary="Enrol a cabinet with its one-time code",
)
def enrol(
    body: EnrolRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> EnrolmentPublic:
    """Trade a one-time enrolment code for the cabinet's MQTT credentials, its pickup-code key
    and its config body; the code is spent. An unknown, used or expired code is a 404 (the same
    words for each) and counts against the caller's address: 10 wrong codes an hour, then 429
    with Retry-After. `locker cabinet enrol` calls this and writes the answer to a 0600 file.
    """
    client = request.client.host if request.client else "unknown"
    grant = enrolment.enrol(
        session=session,
        code=body.code,
        client=client,
        seal_key=settings.secret_key_bytes,
        now=now,
    )
    response.headers["Cache-Control"] = "no-store"  # secrets: no proxy may keep them
    return EnrolmentPublic(
        cabinet_id=grant.cabinet_id,
        code_key=grant.code_key,
        mqtt=EnrolMqttPublic(username=grant.cabinet_id, password=grant.mqtt_password),
        config=EnrolConfigPublic(
            version=grant.config_version, sha256=grant.config_sha256, body=grant.config
        ),
    )
