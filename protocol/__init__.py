"""The wire contracts shared by every part: cabinet <-> cloud MQTT messages and RS485 frames.

- `protocol.topics`    MQTT topic builders and the strict topic parser
- `protocol.messages`  pydantic v2 models of every event, command and payload (version 1)
- `protocol.codec`     `encode(message) -> bytes`, `decode(topic, payload) -> message`
- `protocol.schema`    JSON Schema export (`locker protocol schema DIR`; committed in docs/schemas)
- `protocol.asyncapi`  the AsyncAPI 3.0 document of the MQTT side (docs/asyncapi.json)
- `protocol.lockboard` the RS485 lock-board frame codecs (one module per board family)
- `protocol.errors`    the one exception tree all of the above raise

The contracts in words: docs/mqtt.md and docs/lockboard.md. It imports none of the other
parts and does no I/O. It is versioned and changes only by adding.
"""

PROTOCOL_VERSION = 1
