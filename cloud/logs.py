"""The cloud processes' logging setup: our records at INFO, chatty libraries at WARNING.

`twilio.http_client` logs every API request and answer at INFO: the URL with the account SID,
the request's headers and the answer's headers. That belongs in no production log, so the
`twilio` loggers are held at WARNING whatever level the process logs at.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log requests (and what rides on them) at INFO: only their warnings are kept.
QUIET_LOGGERS = ("twilio", "twilio.http_client")


def quiet_chatty_libraries() -> None:
    """Hold the `QUIET_LOGGERS` at WARNING (idempotent)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr at `level`, with the chatty libraries quieted."""
    logging.basicConfig(level=level, format=FORMAT)
    quiet_chatty_libraries()
