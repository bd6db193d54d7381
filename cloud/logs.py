"""The cloud processes' logging setup: our records at INFO, chatty libraries at WARNING.

`twilio.http_client` logs every API request and answer at INFO: the URL with the account SID,
the request's headers and the answer's headers. That belongs in no production log, so the
`twilio` loggers are held at WARNING whatever level the process logs at.
`LOCKER_CLOUD_LOG_FORMAT=json` makes every line one JSON object (protocol/json_logs.py).
"""

from __future__ import annotations

import logging

from protocol.json_logs import log_to_stderr

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log requests (and what rides on them) at INFO: only their warnings are kept.
QUIET_LOGGERS = ("twilio", "twilio.http_client")


def quiet_chatty_libraries() -> None:
    """Hold the `QUIET_LOGGERS` at WARNING (idempotent)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(level: int = logging.INFO, *, json: bool = False) -> None:
    """Log to stderr at `level` (as JSON lines with `json`), with the chatty libraries quieted."""
    log_to_stderr(level, json=json, text_format=FORMAT)
    quiet_chatty_libraries()
