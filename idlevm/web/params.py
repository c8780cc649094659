"""Parsing request parameters that reach the database: only what it can store gets through.

str.isdigit() accepts "²" (int() then fails) and any length (SQLite then overflows), so ids
are read with one pattern here, and dates are kept where datetime arithmetic (time zones, a
day added) cannot run off its limits.
"""

from __future__ import annotations

import re
from datetime import date

from django.core.validators import MaxValueValidator, MinValueValidator

# ASCII digits only; 18 of them stay below 2**63, the largest integer column.
_ID = re.compile(r"[0-9]{1,18}")
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(9000, 12, 31)
DATE_VALIDATORS = [
    MinValueValidator(MIN_DATE, f"a date from {MIN_DATE.isoformat()} on"),
    MaxValueValidator(MAX_DATE, f"a date up to {MAX_DATE.isoformat()}"),
]


def parse_id(text: str) -> int | None:
    """A database id written in ASCII digits (at most 18), else None."""
    return int(text) if _ID.fullmatch(text) else None
