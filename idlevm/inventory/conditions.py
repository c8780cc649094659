"""Error conditions: found during a cycle, stored deduplicated in ErrorMessage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from idlevm.inventory.models import ErrorMessage
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
    """Store conditions: new ones inserted, known ones touched (a cleared one reopens).

    One statement whatever the number of conditions. Within one call the same
    (kind, subject) counts once: the last message wins.
    """
    unique = {(c.kind, c.subject): c for c in conditions}
    rows = [
        (c.kind, c.subject, c.message[:MAX_MESSAGE], "", now, now, 1, False, None)
        for c in unique.values()
    ]
    return upsert(
        ErrorMessage,
        ["kind", "subject", "message", "note", "first_seen", "modified", "count", "cleared",
         "cleared_at"],
        rows,
        conflict=["kind", "subject"],
        update=["message", "modified"],
        increment=["count"],
        reset={"cleared": "FALSE", "cleared_at": "NULL"},
    )  # fmt: skip
