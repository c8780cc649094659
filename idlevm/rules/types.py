"""The rule language's static types: small, closed, and enough to refuse obvious mistakes.

A type is a kind (what the value is) and whether it may be missing (None). The checker
computes one for every node of an expression; the compiler uses `nullable` to decide where
missing data needs three-valued logic.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kinds of value an expression can produce. Modules and classes are kinds too, so that
# attribute access is checked against the receiver's kind (see reference.ATTRIBUTES).
BOOL, INT, FLOAT, STR = "bool", "int", "float", "str"
DURATION, DATETIME, DATE, TUPLE, NONE = "duration", "datetime", "date", "tuple", "none"
MODULE_DATETIME, MODULE_TIME = "module datetime", "module time"
CLASS_TIMEDELTA, CLASS_DATETIME, CLASS_DATE = (
    "datetime.timedelta",
    "datetime.datetime",
    "datetime.date",
)

NUMBERS = frozenset({BOOL, INT, FLOAT})

# How kinds are named in error messages.
DESCRIPTIONS = {
    BOOL: "true/false",
    INT: "a number",
    FLOAT: "a number",
    STR: "a string",
    DURATION: "a duration",
    DATETIME: "a date and time",
    DATE: "a date",
    TUPLE: "a tuple",
    NONE: "None",
}


@dataclass(frozen=True, slots=True)
class Type:
    kind: str
    nullable: bool = False  # may be None at run time (missing or stale data)

    def describe(self) -> str:
        text = DESCRIPTIONS.get(self.kind, self.kind)
        return f"{text} (or None when missing)" if self.nullable and self.kind != NONE else text

    @property
    def numeric(self) -> bool:
        return self.kind in NUMBERS


def number_kind(*types: Type) -> str:
    """INT when every operand is integral, else FLOAT."""
    return INT if all(t.kind in (INT, BOOL) for t in types) else FLOAT


def comparable(a: Type, b: Type) -> bool:
    """Whether ordering (<, >, ...) between the two kinds means anything."""
    if NONE in (a.kind, b.kind):
        return True  # a missing-only value: unknown, never an error
    if a.numeric and b.numeric:
        return True
    return a.kind == b.kind and a.kind in (STR, DURATION, DATETIME, DATE, TUPLE)


def unify(types: list[Type]) -> Type | None:
    """The common type of several values (min, max, if-else), or None if they differ."""
    nullable = any(t.nullable or t.kind == NONE for t in types)
    kinds = {t.kind for t in types if t.kind != NONE}
    if not kinds:
        return Type(NONE, True)
    if kinds <= NUMBERS:
        kind = BOOL if kinds == {BOOL} else number_kind(*(Type(k) for k in kinds))
        return Type(kind, nullable)
    if len(kinds) == 1:
        return Type(kinds.pop(), nullable)
    return None
