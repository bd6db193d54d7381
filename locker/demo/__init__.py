"""`locker demo`: the whole system on one machine, and the scripted story that checks it.

- `broker`   the embedded MQTT broker (amqtt), unless a real one is named
- `sinks`    local stand-ins for Twilio and WeChat, and the "notices" page showing what they got
- `stack`    the parts as processes: cloud API and worker, per cabinet a simulator and a daemon
- `story`    `locker demo --story`: a shipment's life end to end, each step checked
"""
