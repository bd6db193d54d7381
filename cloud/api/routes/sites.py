"""`/sites`: a site's policy (pickup window, reminder, quiet hours) as the cloud applies it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from cloud.api.deps import ApiKeyDep, SessionDep
from cloud.api.schemas import SitePublic, error_responses
from cloud.services import queries

router = APIRouter(prefix="/sites", tags=["sites"])

SiteId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Site id")
]


@router.get("/{site_id}", response_model=SitePublic, responses=error_responses(401, 404, 422))
def get_site(site_id: SiteId, session: SessionDep, _key: ApiKeyDep) -> SitePublic:
    """Show a site's pickup policy; null quiet hours mean texts may go at any hour."""
    site = queries.get_site(session=session, site_id=site_id)
    if site is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no site {site_id!r}")
    return SitePublic.model_validate(site, from_attributes=True)
