"""Choose the compartment for a parcel of a given size, and count the free doors of each size.

The rule, in order:

1. Only usable compartments: FREE (so in service and not faulted), door not seen open, and no
   unlock pending on it (a remote open of an empty door is someone else's).
2. The smallest size that fits the parcel (XL fits everything, S fits only S), so big doors
   stay free for big parcels.
3. Within a size: S and M go to doors that are not low first (at hand height, where a recipient
   finds them without bending); L and XL go to low doors first (a heavy parcel is not lifted).
4. Then the lowest id in natural order (A2 before A10): deterministic, and couriers learn it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cabinet.core.compartments import (
    Compartment,
    CompartmentState,
    Door,
    Size,
    natural_key,
)


def usable(compartment: Compartment) -> bool:
    """Whether a deposit may take this compartment now."""
    return (
        compartment.state is CompartmentState.FREE
        and compartment.door is not Door.OPEN
        and compartment.unlocked_at is None
    )


def _preference(compartment: Compartment) -> tuple[object, ...]:
    heavy = compartment.size.rank >= Size.L.rank
    low_last = compartment.low != heavy  # S/M: low doors last; L/XL: low doors first
    return (compartment.size.rank, low_last, natural_key(compartment.id))


def allocate(
    compartments: Iterable[Compartment], size: Size, *, larger_than: Size | None = None
) -> Compartment | None:
    """Return the usable compartment the rule picks for `size` (or strictly above `larger_than`)."""
    floor = size.rank if larger_than is None else max(size.rank, larger_than.rank + 1)
    candidates = [c for c in compartments if usable(c) and c.size.rank >= floor]
    return min(candidates, key=_preference, default=None)


def free_by_size(compartments: Iterable[Compartment]) -> dict[Size, int]:
    """Count usable compartments of each size (every size present, zero included)."""
    counts = dict.fromkeys(Size, 0)
    for compartment in compartments:
        if usable(compartment):
            counts[compartment.size] += 1
    return counts
