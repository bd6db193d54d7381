"""`/sites`: a site's policy (pickup window, reminder, quiet hours) as the cloud applies it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from cloud.api.access import ErpPrincipalDep, enforce
from cloud.api.deps import SessionDep
from cloud.api.schemas import SitePublic, error_responses
from cloud.core.access import Action, Resource, ResourceKind, decide
from cloud.services import queries

router = APIRouter(prefix="/sites", tags=["sites"])

SiteId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Site id")
]


@router.get("/{site_id}", response_model=SitePublic, responses=error_responses(401, 403, 404, 422))
def get_site(site_id: SiteId, session: SessionDep, principal: ErpPrincipalDep) -> SitePublic:
    """Show one of the key's sites and its pickup policy; null quiet hours: texts at any hour."""
    site = queries.get_site(session=session, site_id=site_id)
    resource = Resource(ResourceKind.SITE, site.id) if site is not None else None
    # Reading a site's policy goes with reading its cabinets: the same principals, the same scope.
    enforce(decide(principal, Action.READ_CABINET, resource), f"no site {site_id!r}")
    return SitePublic.model_validate(site, from_attributes=True)
