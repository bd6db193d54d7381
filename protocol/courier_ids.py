"""Courier ids are case-insensitive: one rule, for the cloud's registry and the cabinet's kiosk.

The registry keeps an id as it was typed (`sf-001`); the kiosk's keyboard has capitals only, so
a courier types `SF-001`. Both sides compare ids by `courier_key`, so the two are the same
courier, and the registry refuses a second courier whose id differs from one only in case.
"""

from __future__ import annotations


def courier_key(courier_id: str) -> str:
    """Return the form two courier ids are compared in: trimmed, upper case."""
    return courier_id.strip().upper()
