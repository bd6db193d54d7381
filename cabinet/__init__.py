"""The edge daemon that runs on each cabinet.

- `cabinet.core`  the pure domain core: compartments, deposit / pickup / retrieval flows,
                  alarms and lockouts, with no I/O (inputs in, effects out)

Adapters come around it: door drivers (RS485 lock boards over pyserial, GPIO through
gpiozero), the SQLite journal, the MQTT link to the cloud, and the touchscreen kiosk. It imports
`protocol` and never the cloud or the simulator.
"""
