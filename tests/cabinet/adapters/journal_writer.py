"""A journal writer to be SIGKILLed: commits steps in a loop and prints each one once committed."""

from __future__ import annotations

import random
import sys
from types import SimpleNamespace

from cabinet.journal import Journal


def main(path: str, cab: str, seed: int) -> None:
    rng = random.Random(seed)
    journal = Journal.open(path, cab=cab)
    snapshot = journal.load_snapshot()
    step = snapshot.data["step"] if snapshot else 0
    while True:
        step += 1
        events = [
            SimpleNamespace(type="door.forced", data={"compartment": f"S{step % 1000}"})
            for _ in range(rng.randint(1, 3))
        ]
        last_seq = journal.last_seq + len(events)
        # The snapshot claims the seq its step ends on: after a kill the two must still agree.
        journal.commit_step({"step": step, "last_seq": last_seq}, events, [f"S{step % 1000}"])
        if step % 7 == 0:
            journal.ack_upto(last_seq - 5)
        print(step, last_seq, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
