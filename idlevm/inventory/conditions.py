"""Error conditions: found during a cycle, stored deduplicated in ErrorMessage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, models, transaction

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

    Three statements whatever the number of conditions. Within one call the same
    (kind, subject) counts once: the last message wins.
    """
    unique = {(c.kind, c.subject): c for c in conditions}
    rows = [
        (c.kind, c.subject, c.message[:MAX_MESSAGE], "", now, now, 1, False, None)
        for c in unique.values()
    ]
    # Part of the caller's transaction when there is one (collect), else its own.
    with transaction.atomic(savepoint=False):
        sent = upsert(
            ErrorMessage,
            ["kind", "subject", "message", "note", "first_seen", "modified", "count", "cleared",
             "cleared_at"],
            rows,
            conflict=["kind", "subject"],
            update=["message", "modified"],
            increment=["count"],
        )  # fmt: skip
        if sent:
            reopen_recurred(now)
    return sent


def reopen_recurred(now: datetime) -> None:
    """Cleared errors seen by this call are open again, each with a "seen again" event.

    The upsert has just set `modified = now` on exactly the errors seen (only it writes
    `modified`), so they are found by that instead of by sending their keys again: one
    INSERT ... SELECT and one UPDATE, however many errors recur.
    """
    q = connection.ops.quote_name
    event, error = column_names(ErrorEvent), column_names(ErrorMessage)
    into = ", ".join(
        event[name]
        for name in ("error", "time", "kind", "username", "message_before", "message_after",
                     "note_before", "note_after")
    )  # fmt: skip
    sql = (
        f"INSERT INTO {q(ErrorEvent._meta.db_table)} ({into}) "
        f"SELECT {error['id']}, %s, %s, '', '', {error['message']}, {error['note']}, "
        f"{error['note']} FROM {q(ErrorMessage._meta.db_table)} "
        f"WHERE {error['cleared']} = %s AND {error['modified']} = %s"
    )
    when = ErrorMessage._meta.get_field("modified").get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [when, ErrorEvent.Kind.RECURRED.value, True, when])
    ErrorMessage.objects.filter(cleared=True, modified=now).update(cleared=False, cleared_at=None)


def column_names(model: type[models.Model]) -> dict[str, str]:
    """Field name -> quoted column, for the model's concrete fields."""
    q = connection.ops.quote_name
    return {f.name: q(f.column) for f in model._meta.concrete_fields}
