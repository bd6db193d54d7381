"""Turn the cloud's decoded commands into the cabinet core's inputs, one command type each.

The MQTT link hands the daemon a validated `CommandBase`; the daemon calls `command_input` and
feeds the result to `apply`. Events go the other way without a mapping here: the core's `Emit`
(type, data) is already the envelope's type and data, and the journal wraps it (seq, id, ts).
"""

from __future__ import annotations

from cabinet.core.compartments import Size
from cabinet.core.inputs import (
    CodeGrant,
    CodesPut,
    CodesRevoke,
    CompartmentOpen,
    CompartmentService,
    CompartmentsRelease,
    CompartmentsReserve,
    CourierGrant,
    CouriersPut,
    Input,
    RetrievalsPut,
)
from protocol.messages import (
    CommandBase,
    OpenCompartment,
    PutCodes,
    PutCouriers,
    PutRetrievals,
    ReleaseCompartments,
    ReserveCompartment,
    RevokeCodes,
    SetCompartmentService,
)


class UnsupportedCommand(Exception):
    """A valid command the cabinet core has no input for (acked `ok: false` with this text)."""


def command_input(command: CommandBase) -> Input:
    """Return the core input that carries out `command`, or raise UnsupportedCommand."""
    match command:
        case PutCodes(data=data):
            return CodesPut(
                tuple(
                    CodeGrant(e.parcel_id, e.compartment, e.code_hash, e.expires_at)
                    for e in data.entries
                )
            )
        case RevokeCodes(data=data):
            return CodesRevoke(tuple(data.parcel_ids))
        case OpenCompartment(data=data):
            return CompartmentOpen(data.compartment, data.reason, data.actor)
        case SetCompartmentService(data=data):
            return CompartmentService(data.compartment, data.in_service)
        case PutCouriers(data=data):
            return CouriersPut(
                tuple(CourierGrant(c.courier_id, c.pin_hash, c.carrier_id) for c in data.couriers)
            )
        case PutRetrievals(data=data):
            return RetrievalsPut(tuple(data.parcel_ids))
        case ReserveCompartment(data=data):
            return CompartmentsReserve(
                parcel_id=data.parcel_id,
                size=Size(data.size.value),
                until=data.until,
                phone=data.phone,
                tracking_no=data.tracking_no,
                carrier_id=data.carrier_id,
            )
        case ReleaseCompartments(data=data):
            return CompartmentsRelease(tuple(data.parcel_ids))
    # config.put changes the daemon's settings, not the core's state: the service handles it.
    raise UnsupportedCommand(f"{command.type} is not a cabinet core command")
