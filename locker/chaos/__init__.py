"""`locker chaos`: a fault campaign over the real processes, Jepsen-style.

One concept per module:

- `proxy`    a TCP proxy (asyncio, a thread) in front of the broker or PostgreSQL that passes,
             delays, stalls or refuses connections on command: the network cuts;
- `cluster`  the processes (Mosquitto, a PostgreSQL database of the run's own, 2 cloud workers,
             the API, 3 cabinet daemons on simulated lock boards, the fakes), each reachable
             through its own proxy, each killable with -9 and restartable;
- `history`  the run's log of what the workload and the nemesis did, in order;
- `workload` couriers deposit, recipients pick up with the SMS's code, parcels expire (the
             workers' injected clock jumps) and couriers take them back;
- `nemesis`  the faults, from the seed, at random instants, and their healing;
- `checker`  the invariants over the full history once everything is healed and quiet;
- `campaign` the run: start, drive, heal, check, report.
"""
