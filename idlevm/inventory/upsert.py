"""Bulk insert-or-update in one statement per table, whatever the number of rows.

Django's bulk_create(update_conflicts=True) splits rows into batches sized by the backend's
parameter limit (999 on SQLite: ~25 VMs a statement). Here rows go through one
`executemany` of a single-row upsert, which the drivers run as one prepared statement:
the query count stays constant and 10k rows take milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import connection, models

Row = Sequence[Any]


def _converters(model: type[models.Model], columns: Sequence[str]) -> list[Callable[[Any], Any]]:
    """Per column, how a Python value becomes a database value (datetimes, JSON)."""
    out: list[Callable[[Any], Any]] = []
    for name in columns:
        field = model._meta.get_field(name)
        if isinstance(field, models.DateTimeField | models.JSONField):

            def convert(value: Any, field: Any = field) -> Any:
                return None if value is None else field.get_db_prep_save(value, connection)

            out.append(convert)
        else:
            out.append(lambda value: value)
    return out


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # concrete columns only, never relations' reverse
    return connection.ops.quote_name(field.column)


def _assignments(
    model: type[models.Model],
    table: str,
    update: Sequence[str],
    increment: Sequence[str],
    reset: Mapping[str, str],
) -> list[str]:
    mysql = connection.vendor == "mysql"
    sets = []
    for name in update:
        col = _column(model, name)
        sets.append(f"{col} = VALUES({col})" if mysql else f"{col} = EXCLUDED.{col}")
    for name in increment:
        col = _column(model, name)
        sets.append(f"{col} = {col} + 1" if mysql else f"{col} = {table}.{col} + 1")
    sets += [f"{_column(model, name)} = {sql}" for name, sql in reset.items()]
    return sets


def upsert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Row],
    *,
    conflict: Sequence[str],
    update: Sequence[str],
    increment: Sequence[str] = (),
    reset: Mapping[str, str] | None = None,
) -> int:
    """Insert `rows` (tuples in `columns` order); on a `conflict` key, update the row.

    `update` columns take the new value, `increment` columns add one to the stored value,
    `reset` columns take a fixed SQL constant (e.g. "NULL"): constants, not parameters,
    because mysqlclient's executemany only fills the VALUES part. Returns the rows sent.
    """
    converters = _converters(model, columns)
    prepared = [tuple(conv(v) for conv, v in zip(converters, row, strict=True)) for row in rows]
    if not prepared:
        return 0
    table = connection.ops.quote_name(model._meta.db_table)
    cols = [_column(model, c) for c in columns]
    sets = _assignments(model, table, update, increment, reset or {})
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
    if connection.vendor == "mysql":
        # MySQL has no conflict target: any unique key conflicts.
        sql += f" ON DUPLICATE KEY UPDATE {', '.join(sets)}" if sets else ""
        sql = sql if sets else sql.replace("INSERT INTO", "INSERT IGNORE INTO", 1)
    else:
        target = ", ".join(_column(model, c) for c in conflict)
        action = f"UPDATE SET {', '.join(sets)}" if sets else "NOTHING"
        sql += f" ON CONFLICT ({target}) DO {action}"
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)
    return len(prepared)
