"""Exceptions raised by the OpenNebula client.

OpenNebula reports failures as `[false, message, code, ...]`; each documented code gets its own
class so callers can tell "the VM is gone" (OneNoExistsError) from "wrong password"
(OneAuthenticationError). Everything that is not a well-formed OpenNebula reply (connection
refused, HTTP errors, XML-RPC faults, unparsable bodies) is a OneTransportError.

Messages may be logged or shown to operators, so every message that could carry the session
secret (OpenNebula echoes parts of requests back in some errors) is scrubbed by `scrub`
before an exception is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from idlevm.one.states import ERROR_CODES

REDACTED = "***"


class OneError(Exception):
    """Base of every error this package raises."""

    def __init__(self, message: str, code: int = 0, method: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.method = method

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        code = f" [0x{self.code:x}]" if self.code else ""
        return f"{where}{self.message}{code}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, method={self.method!r})"


class OneAuthenticationError(OneError):
    """0x100: the session was not accepted (wrong user or password)."""


class OneAuthorizationError(OneError):
    """0x200: the user may not do this."""


class OneNoExistsError(OneError):
    """0x400: the object does not exist (e.g. the VM was deleted)."""


class OneActionError(OneError):
    """0x800: the action is not allowed in the object's current state."""


class OneApiError(OneError):
    """0x1000: bad call (wrong arguments)."""


class OneInternalError(OneError):
    """0x2000: oned failed internally (database, drivers)."""


class OneAllocateError(OneError):
    """0x4000: allocation failed."""


class OneLockedError(OneError):
    """0x8000: the object is locked."""


class OneReplicationError(OneError):
    """0x10000: federation/HA replication failed."""


class OneTransportError(OneError):
    """Could not get a well-formed OpenNebula reply: network, HTTP, XML-RPC fault, bad body."""


class OneTimeoutError(OneTransportError):
    """Connecting or waiting for the reply took longer than the configured timeout."""


class OneParseError(OneTransportError):
    """The reply arrived but its XML body is not what OpenNebula sends."""


class OneConfigError(OneError):
    """Local configuration problem (auth file missing, unreadable or malformed)."""


ERROR_CLASSES: dict[int, type[OneError]] = {
    ERROR_CODES["AUTHENTICATION"]: OneAuthenticationError,
    ERROR_CODES["AUTHORIZATION"]: OneAuthorizationError,
    ERROR_CODES["NO_EXISTS"]: OneNoExistsError,
    ERROR_CODES["ACTION"]: OneActionError,
    ERROR_CODES["XML_RPC_API"]: OneApiError,
    ERROR_CODES["INTERNAL"]: OneInternalError,
    ERROR_CODES["ALLOCATE"]: OneAllocateError,
    ERROR_CODES["LOCKED"]: OneLockedError,
    ERROR_CODES["REPLICATION"]: OneReplicationError,
}


def error_for_code(code: int, message: str, method: str) -> OneError:
    """The exception for an OpenNebula failure reply; unknown codes get the base class."""
    cls = ERROR_CLASSES.get(code, OneError)
    return cls(message, code=code, method=method)


# userinfo in a URL ("http://user:pass@host") is a secret too.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every secret (and URL userinfo) from text.

    Longest secrets first, so that "user:password" is replaced whole before "password".
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
