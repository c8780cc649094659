"""Error conditions: found during a cycle, stored deduplicated in ErrorMessage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from idlevm.inventory.models import ErrorEvent, ErrorMessage
from idlevm.inventory.upsert import upsert

Kind = ErrorMessage.Kind

# An error message is operator-facing text built partly from VM-controlled data: bound it.
MAX_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str
    subject: str
    message: str


def record(conditions: Iterable[Condition], now: datetime) -> int:
    """Store conditions: new ones inserted, known ones touched (a cleared one reopens, with
    a "seen again" ErrorEvent).

    Within one call the same (kind, subject) counts once: the last message wins. Statements:
    one SELECT per KEYS_PER_QUERY conditions, the upsert, and when some were cleared one
    INSERT of their events and one UPDATE reopening them (each a single `executemany`).
    """
    unique = {(c.kind, c.subject): c for c in conditions}
    rows = [
        (c.kind, c.subject, c.message[:MAX_MESSAGE], "", now, now, 1, False, None)
        for c in unique.values()
    ]
    # Part of the caller's transaction when there is one (collect), else its own.
    with transaction.atomic(savepoint=False):
        recurring = cleared_among(list(unique))
        sent = upsert(
            ErrorMessage,
            ["kind", "subject", "message", "note", "first_seen", "modified", "count", "cleared",
             "cleared_at"],
            rows,
            conflict=["kind", "subject"],
            update=["message", "modified"],
            increment=["count"],
        )  # fmt: skip
        if recurring:
            reopen_recurred(recurring)
    return sent


# Keys per SELECT when looking for cleared errors: a bounded statement however many.
KEYS_PER_QUERY = 500


def cleared_among(keys: list[tuple[str, str]]) -> list[tuple[int, datetime | None]]:
    """(id, cleared_at) of the cleared errors among `keys`, locked until the transaction ends.

    Found by key before the upsert, so exactly the errors this call sees are reopened (not
    those that merely share its `now`); the lock keeps an operator's clear or reopen from
    slipping in between this and the reopening.
    """
    found: list[tuple[int, datetime | None]] = []
    for start in range(0, len(keys), KEYS_PER_QUERY):
        by_kind: dict[str, list[str]] = {}
        for kind, subject in keys[start : start + KEYS_PER_QUERY]:
            by_kind.setdefault(kind, []).append(subject)
        match = Q()
        for kind, subjects in by_kind.items():
            match |= Q(kind=kind, subject__in=subjects)
        # Every seen row is locked (not only the cleared ones): one cleared meanwhile would
        # otherwise stay cleared although this call saw it after the clear.
        locked = (
            ErrorMessage.objects.select_for_update()
            .filter(match)
            .order_by("id")
            .values_list("id", "cleared", "cleared_at")
        )
        found += [(pk, cleared_at) for pk, cleared, cleared_at in locked if cleared]
    return found


def reopen_recurred(recurring: list[tuple[int, datetime | None]]) -> None:
    """Reopen these cleared errors, each with a "seen again" event.

    The event is stamped with the clock now, never before the error's `cleared_at`: the
    cycle's `now` is taken before the fetch, and an operator may have cleared the error
    since, so stamping with it would put "seen again" before "cleared" in the history.
    One `executemany` each for the events and the reopening, however many errors recur.
    """
    q = connection.ops.quote_name
    event, error = column_names(ErrorEvent), column_names(ErrorMessage)
    into = ", ".join(
        event[name]
        for name in ("error", "time", "kind", "username", "message_before", "message_after",
                     "note_before", "note_after")
    )  # fmt: skip
    insert = (
        f"INSERT INTO {q(ErrorEvent._meta.db_table)} ({into}) "
        f"SELECT {error['id']}, %s, %s, '', '', {error['message']}, {error['note']}, "
        f"{error['note']} FROM {q(ErrorMessage._meta.db_table)} WHERE {error['id']} = %s"
    )
    reopen = (
        f"UPDATE {q(ErrorMessage._meta.db_table)} SET {error['cleared']} = %s, "
        f"{error['cleared_at']} = NULL WHERE {error['id']} = %s"
    )
    field = ErrorEvent._meta.get_field("time")
    wall = timezone.now()
    kind = ErrorEvent.Kind.RECURRED.value
    events = [
        (field.get_db_prep_value(max(wall, cleared_at or wall), connection), kind, pk)
        for pk, cleared_at in recurring
    ]
    with connection.cursor() as cursor:
        cursor.executemany(insert, events)
        cursor.executemany(reopen, [(False, pk) for pk, _ in recurring])


def column_names(model: type[models.Model]) -> dict[str, str]:
    """Field name -> quoted column, for the model's concrete fields."""
    q = connection.ops.quote_name
    return {f.name: q(f.column) for f in model._meta.concrete_fields}
