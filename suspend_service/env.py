"""Strict helpers that read settings from environment variables.

Every helper fails loudly (ImproperlyConfigured, naming the variable) on a value it cannot
use, instead of silently falling back: a typo in production must stop the service, not make
it run with defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:  # also rejects nan
        raise ImproperlyConfigured(f"{name}={raw!r} must be a number >= {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def secret_key(debug: bool, var_dir: Path) -> str:
    """SECRET_KEY from the environment; in development, generated once into var/."""
    key = os.environ.get("SECRET_KEY", "")
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY is too short (use at least 32 characters)")
        return key
    if not debug:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


_ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
}


def database(url: str) -> dict[str, Any]:
    """Django DATABASES entry from a URL.

    sqlite:///relative/path, sqlite:////absolute/path, postgres://user:pw@host:port/name,
    mysql://user:pw@host:port/name. Query parameters become OPTIONS (e.g. ?sslmode=require).
    """
    parts = urlsplit(url)
    engine = _ENGINES.get(parts.scheme)
    if engine is None:
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported "
            f"(use one of: {', '.join(sorted(_ENGINES))})"
        )
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        name = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not name:
            raise ImproperlyConfigured(
                "DATABASE_URL for sqlite needs a file: sqlite:///var/db.sqlite3"
            )
        # Waiting for the lock beats failing when the web app and the service write at once.
        sqlite_options: dict[str, Any] = {"timeout": 20.0, **options}
        try:
            sqlite_options["timeout"] = float(sqlite_options["timeout"])
        except ValueError:
            raise ImproperlyConfigured("DATABASE_URL: sqlite timeout must be a number") from None
        return {"ENGINE": engine, "NAME": name, "OPTIONS": sqlite_options}
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured(
            f"DATABASE_URL needs a database name: {parts.scheme}://host/NAME"
        )
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured("DATABASE_URL has an invalid port") from None
    return {
        "ENGINE": engine,
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        # The --loop daemon outlives database restarts: check a kept connection before use.
        "CONN_HEALTH_CHECKS": True,
    }
