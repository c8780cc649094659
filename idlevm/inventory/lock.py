"""One cycle at a time: cron may start a cycle while a slow one still runs.

Two overlapping cycles would each mark as gone the VMs the other fetched, and double the
load on OpenNebula. The lock lives where every service instance meets, the database:
PostgreSQL and MariaDB advisory locks (released by the server if the process dies), and for
SQLite, whose users share one machine, an flock beside the database file (an in-memory
database, as in tests, is private to its process: a process-wide lock is enough).
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

LOCK_NAME = "idlevm.suspend_service.cycle"
# pg_advisory_lock takes a bigint: a stable one derived from the name.
PG_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)


@contextmanager
def cycle_lock() -> Iterator[bool]:
    """Yields True while this process holds the cycle lock, False if another one holds it."""
    if connection.vendor == "postgresql":
        with _sql_lock("SELECT pg_try_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)",
                       PG_KEY) as held:  # fmt: skip
            yield held
    elif connection.vendor == "mysql":
        # GET_LOCK names are server-wide: name the database, hashed to MySQL's 64 chars.
        database = str(connection.settings_dict["NAME"])
        name = f"idlevm.cycle.{hashlib.sha256(database.encode()).hexdigest()[:40]}"
        with _sql_lock("SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)", name) as held:
            yield held
    elif _in_memory():
        with _process_lock() as held:  # no other process can see this database
            yield held
    else:
        path = Path(str(settings.DATABASES["default"]["NAME"]) + ".cycle-lock")
        with _file_lock(path) as held:
            yield held


@contextmanager
def _sql_lock(take: str, release: str, key: int | str) -> Iterator[bool]:
    with connection.cursor() as cursor:
        cursor.execute(take, [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute(release, [key])


def _in_memory() -> bool:
    name = str(settings.DATABASES["default"]["NAME"])
    return not name or name.startswith(":memory:") or "mode=memory" in name


_PROCESS_LOCK = threading.Lock()


@contextmanager
def _process_lock() -> Iterator[bool]:
    if not _PROCESS_LOCK.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        _PROCESS_LOCK.release()


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
