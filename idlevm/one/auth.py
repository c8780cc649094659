"""Where to reach OpenNebula and how to log in, found the way OpenNebula's own tools do it.

Endpoint: `$ONE_XMLRPC`, default `http://localhost:2633/RPC2`.
Session: the first existing file of `$ONE_AUTH`, `~/.one/one_auth`,
`/var/lib/one/.one/one_auth` (as the Ruby OCA does: a `$ONE_AUTH` that names no file is
skipped, not an error). The file holds one line `user:password`; trailing whitespace is
stripped. Errors name the file, never its content.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from idlevm.one.errors import REDACTED, OneConfigError

DEFAULT_ENDPOINT = "http://localhost:2633/RPC2"
SYSTEM_AUTH_FILE = Path("/var/lib/one/.one/one_auth")
# A one_auth file is one short line; anything much bigger is not one (and not worth reading).
MAX_AUTH_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Credentials:
    """An OpenNebula session `user:password`; repr and str never show the password."""

    user: str
    password: str = field(repr=False)

    @property
    def session(self) -> str:
        """The string OpenNebula expects as the first parameter of every call."""
        return f"{self.user}:{self.password}"

    def __str__(self) -> str:
        return f"{self.user}:{REDACTED}"

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password={REDACTED!r})"


def endpoint_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("ONE_XMLRPC") or DEFAULT_ENDPOINT


def auth_file_candidates(
    environ: Mapping[str, str] | None = None, system_file: Path = SYSTEM_AUTH_FILE
) -> list[Path]:
    """The files OpenNebula would try, in order."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("ONE_AUTH"):
        candidates.append(Path(env["ONE_AUTH"]))
    home = env.get("HOME")
    if home:
        candidates.append(Path(home) / ".one" / "one_auth")
    candidates.append(system_file)
    return candidates


def find_auth_file(
    environ: Mapping[str, str] | None = None, system_file: Path = SYSTEM_AUTH_FILE
) -> Path:
    candidates = auth_file_candidates(environ, system_file)
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise OneConfigError(f"no OpenNebula auth file found (tried {tried})")


def parse_session(text: str, source: str = "session") -> Credentials:
    """Parse `user:password`; `source` names where it came from in error messages."""
    line = text.rstrip()
    if not line:
        raise OneConfigError(f"{source} is empty")
    if "\n" in line or "\r" in line:
        raise OneConfigError(f"{source} must hold a single line user:password")
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise OneConfigError(f"{source} is not of the form user:password")
    return Credentials(user=user, password=password)


def read_auth_file(path: Path) -> Credentials:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_AUTH_FILE_BYTES + 1)
    except OSError as exc:
        # exc.strerror only ("Permission denied"); never the content, which we do not have.
        raise OneConfigError(f"cannot read OpenNebula auth file {path}: {exc.strerror}") from None
    if len(data) > MAX_AUTH_FILE_BYTES:
        raise OneConfigError(f"OpenNebula auth file {path} is too large to be one line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise OneConfigError(f"OpenNebula auth file {path} is not UTF-8 text") from None
    return parse_session(text, source=f"OpenNebula auth file {path}")


def credentials_from_env(
    environ: Mapping[str, str] | None = None, system_file: Path = SYSTEM_AUTH_FILE
) -> Credentials:
    return read_auth_file(find_auth_file(environ, system_file))
