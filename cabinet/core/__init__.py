"""The cabinet's pure domain core: state machines, allocation and policies, no I/O.

Inputs go in, effects come out: `apply(cabinet, input, now, ctx) -> (cabinet, effects)`.
Time (`now`), ids (`ctx.new_id`) and secrets (`ctx.code_key`) are arguments; nothing here
reads a clock, a file, a socket or a random source. Adapters (door drivers, journal, MQTT link,
kiosk) sit around it and run its effects.

Modules, one concept each:

- `cabinet`      `apply`, `reconcile` and `Context`: the one entry point
- `state`        `Cabinet` and what it holds (parcels, courier session, settings); snapshots
- `compartments` sizes, doors, and every compartment state transition in one table
- `allocation`   which compartment a parcel gets; free doors per size
- `deposit`      the courier's session: sign in, deposit parcels, sign out
- `pickup`       codes and QR payloads at the screen, code commands, remote open
- `retrieval`    couriers taking back parcels the cloud marked for return
- `removal`      the one-door-at-a-time unlock queue and what a finished removal emits
- `alarms`       door forced, door left open, unlock lapse, lock fault
- `occupancy`    occupancy sensors (KR-CU boards): what is inside decides deposits and pickups
- `lockout`      keypad and courier-PIN lockouts, with the guessing-bound arithmetic
- `phones`       mobile numbers: parse to E.164, mask for display
- `inputs`       every input, as frozen dataclasses
- `effects`      `Unlock`, `Emit` (with one builder per event type), `Show`, `Log`
- `screens`      the typed outcomes the kiosk shows
- `serial`       dataclasses to plain dicts and back, for snapshots
- `errors`       the exception tree
"""

from cabinet.core.cabinet import Context, apply, reconcile
from cabinet.core.state import Cabinet, Config, new_cabinet

__all__ = ["Cabinet", "Config", "Context", "apply", "new_cabinet", "reconcile"]
