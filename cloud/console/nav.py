"""The console's header links: a page appears for an account whose role may do its action.

A new page adds one `NavItem` here (docs/console.md); the order here is the order on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.core.access import ROLE_ACTIONS, Action, Principal


@dataclass(frozen=True)
class NavItem:
    key: str  # the i18n key of its label
    path: str  # under /console
    action: Action  # shown to the roles that may do this


NAV: list[NavItem] = [
    NavItem("nav.fleet", "/console/fleet", Action.READ_CABINET),
    NavItem("nav.alarms", "/console/alarms", Action.READ_ALARMS),
    NavItem("nav.reports", "/console/reports", Action.READ_REPORTS),
    NavItem("nav.audit", "/console/audit", Action.READ_AUDIT),
    NavItem("nav.couriers", "/console/couriers", Action.READ_COURIERS),
    # After couriers: a carrier lands on its couriers (home_for), and may search parcels too.
    NavItem("nav.parcels", "/console/parcels", Action.READ_PARCEL),
    NavItem("nav.statements", "/console/statements", Action.READ_SETTLEMENTS),
]


def nav_for(principal: Principal) -> list[NavItem]:
    allowed = ROLE_ACTIONS[principal.kind]
    return [item for item in NAV if item.action in allowed]


def home_for(principal: Principal) -> str:
    """Where an account lands after signing in: its first page in the header."""
    items = nav_for(principal)
    return items[0].path if items else "/console/sign-in"
