"""RS485 lock-control board protocols: one sans-I/O codec module per board family.

Each family module (today `family_8a`, the common "8A/80" boards of docs/lockboard.md)
offers the same shape, so the cabinet's driver and the simulator never depend on a family's bytes:

- frame classes (frozen dataclasses) for every request and reply;
- `encode(frame) -> bytes`;
- `RequestDecoder` (what a board hears) and `ReplyDecoder` (what the host hears), both streaming:
  `feed(bytes) -> list[frame]`, resynchronising after garbage, split reads and bad checksums,
  and counting what they discard in `.stats`.

A new family (Kerong KR-CU, say) is a new module with the same shape, not a new driver.
"""
