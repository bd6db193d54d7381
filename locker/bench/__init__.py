"""Benchmarks of the system on this machine (`locker bench ...`); figures, not pass/fail tests."""
