"""The `locker` command and the wiring between the cabinet, the cloud and the simulator.

It is the only package that may import more than one of `cabinet`, `cloud` and `firmware_sim`.
"""
