"""The cloud's one exception tree: what a service refuses, said in the domain's words.

    CloudError                  refused; nothing changed (but a wrong one-time code counts)
     ├── NotFound               the thing named does not exist, or not for this caller;
     │   │                      also a LookupError
     │   ├── UnknownCabinet     no cabinet by that id
     │   └── UnknownParcel      no parcel by that id
     ├── InvalidInput           the input is malformed; `field` names it (and `location`:
     │                          body, header, query); also a ValueError
     ├── Conflict               not possible in the current state (a live tracking number, a
     │                          used key, a parcel that left the locker)
     ├── Unauthenticated        a proof of who is asking is wrong (a one-time code)
     ├── Forbidden              a token or nonce is forged, stale or for another cabinet
     ├── RateLimited            too many tries; `retry_after_s` says when to come back
     └── Unavailable            a service the request needs is not configured or not answering

Services raise these and never choose an HTTP status; `cloud.api.app` maps the tree to status
codes in one exception handler (`HTTP_STATUS`). Modules keep their own names where a caller reads
better with them (`scan_open.NonceError` is a Forbidden, `registry.RegistryError` an
InvalidInput): they subclass a node here, so the handler knows them. Errors of the pure core stay
in `cloud.core.errors` (the core imports nothing), those of a provider send in
`cloud.notify.errors` (never an answer to a request).
"""

from __future__ import annotations


class CloudError(Exception):
    """A request the cloud refused; nothing was written (unless the subclass says otherwise).

    `field` names the input at fault, if one is, and `location` where it was sent (body, header,
    query): the API lists it beside the message for a 422.
    """

    def __init__(self, message: str, *, field: str | None = None, location: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.location = location


class NotFound(CloudError, LookupError):
    """The thing named does not exist, or does not for this caller (the same words either way).

    `field` names the input that named it when that input is in a request's body or query (the
    URL itself is fine then); None when the URL's own path names it.
    """


class UnknownCabinet(NotFound):
    """No cabinet by that id (or not one the caller may use)."""


class UnknownParcel(NotFound):
    """No parcel by that id."""


class InvalidInput(CloudError, ValueError):
    """The input is malformed; `field` names it, `location` says where it was sent."""


class Conflict(CloudError):
    """Not possible in the current state; the same request may work once the state changes."""


class Unauthenticated(CloudError):
    """A proof of who is asking (a one-time code) is wrong, expired, used or locked."""


class Forbidden(CloudError):
    """A credential (a token, a nonce) is malformed, forged, stale or for something else."""


class RateLimited(CloudError):
    """Too many tries; try again after `retry_after_s` seconds."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(CloudError):
    """A service the request needs is not configured here, or did not answer."""
