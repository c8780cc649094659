"""What a rule may call and which attributes it may read: the language's allow-lists.

Everything a rule can reach is listed here, with its static type, so the checker can refuse
the rest before anything runs. Implementations return None when an argument is None
(missing data stays unknown instead of raising), and keep their output bounded.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

# The regular-expression parser, to inspect a pattern's structure (the public names
# sre_parse/sre_constants are deprecated aliases of these since Python 3.11).
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings

from idlevm.rules.types import (
    BOOL,
    CLASS_DATE,
    CLASS_DATETIME,
    CLASS_TIMEDELTA,
    DATE,
    DATETIME,
    DURATION,
    FLOAT,
    INT,
    MODULE_DATETIME,
    MODULE_TIME,
    NONE,
    NUMBERS,
    STR,
    TUPLE,
    Type,
    unify,
)

NUM = NUMBERS
ANY_ORDERED = NUMBERS | {STR, DURATION, DATETIME, DATE, NONE}
MAX_PATTERN = 200  # characters in a re_match / glob pattern
MAX_SUBJECT = 1024  # characters of a string a pattern is matched against
MAX_REPEATS = 2  # repetitions (*, +, {m,n}) in one pattern: at most quadratic backtracking
MAX_ROUND_DIGITS = 15  # round(5, -10**18) would compute 10**(10**18)
MAX_INT_TEXT = 30  # int("9" * 4300) ** 8 is slow arithmetic on a VM owner's say-so


class SignatureError(ValueError):
    """Arguments a function does not accept (the checker adds the position)."""


@dataclass(frozen=True, slots=True)
class Function:
    """A callable of the language: a function, a method, or a constructor."""

    name: str
    impl: Callable[..., object] | None  # None: bound per VM (user_attr) or per value (methods)
    params: tuple[frozenset[str], ...]  # accepted kinds, per positional parameter
    required: int  # how many of them must be given
    returns: Callable[[list[Type]], Type]
    doc: str
    example: str = ""
    pure: bool = True  # same arguments, same result: folded when all are constants
    variadic: bool = False  # the last parameter repeats
    keywords: tuple[str, ...] = ()  # accepted keyword arguments (kinds as params[0])
    constant_args: tuple[int, ...] = ()  # positions that must be literal constants
    # The same without the None checks: called when no argument can be None (faster).
    plain: Callable[..., object] | None = None


def _nullable(args: list[Type]) -> bool:
    return any(a.nullable or a.kind == NONE for a in args)


def returns(kind: str) -> Callable[[list[Type]], Type]:
    """Result of `kind`, missing when any argument may be missing."""
    return lambda args: Type(kind, _nullable(args))


def same_as_args(args: list[Type]) -> Type:
    common = unify(args)
    if common is None:
        raise SignatureError(
            "arguments of different kinds: " + ", ".join(a.describe() for a in args)
        )
    # abs(True) is 1, not True: a number (and/or/not take real true/false values only).
    return Type(INT, common.nullable) if common.kind == BOOL else common


def null_safe(fn: Callable[..., object]) -> Callable[..., object]:
    def wrapper(*args: object, **kwargs: object) -> object:
        for a in args:
            if a is None:
                return None
        for v in kwargs.values():
            if v is None:
                return None
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.plain = fn  # type: ignore[attr-defined]
    return wrapper


# --- implementations -------------------------------------------------------------------------


def kleene_and(values: Iterable[object]) -> bool | None:
    """Kleene's AND (`all`, and `and` with missing operands): false if any value is false,
    else unknown if any is unknown (None), else true."""
    result: bool | None = True
    for v in values:
        if v is None:
            result = None
        elif not v:
            return False
    return result


def kleene_or(values: Iterable[object]) -> bool | None:
    """Kleene's OR (`any`, and `or` with missing operands): true if any value is true,
    else unknown if any is unknown (None), else false."""
    result: bool | None = False
    for v in values:
        if v is None:
            result = None
        elif v:
            return True
    return result


def _min(*args: Any) -> Any:
    for v in args:
        if v is None:
            return None
    return min(args)


def _max(*args: Any) -> Any:
    for v in args:
        if v is None:
            return None
    return max(args)


def safe_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a rule's regular expression, refusing the ones that can backtrack for ever.

    Python's re has no timeout, so the pattern itself is limited: at most MAX_PATTERN
    characters, no backreferences or lookarounds, no repetition or alternation inside a
    repetition (`(a+)+`, `(a|aa)*`: exponential backtracking), and at most MAX_REPEATS
    repetitions (`a*a*a*b` is cubic). Subjects are cut to MAX_SUBJECT characters, so a
    match costs well under a millisecond whatever the VM is named.
    """
    if len(pattern) > MAX_PATTERN:
        raise SignatureError(f"pattern longer than {MAX_PATTERN} characters")
    try:
        parsed = sre_parse.parse(pattern)
    except (sre_constants.error, RecursionError, OverflowError) as exc:
        raise SignatureError(f"bad regular expression: {exc}") from None
    if _check_pattern(parsed, in_repeat=False) > MAX_REPEATS:
        raise SignatureError(f"at most {MAX_REPEATS} repetitions (*, +, {{m,n}}) in a pattern")
    return _compiled(pattern)


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT}
_REFUSED = {
    sre_constants.GROUPREF: "backreferences",
    sre_constants.GROUPREF_EXISTS: "conditional groups",
    sre_constants.ASSERT: "lookahead/lookbehind",
    sre_constants.ASSERT_NOT: "lookahead/lookbehind",
}


def _check_pattern(items: Any, in_repeat: bool) -> int:
    """Refuse the dangerous shapes; returns the number of repetitions."""
    repeats = 0
    for op, arg in items:
        if op in _REFUSED:
            raise SignatureError(f"{_REFUSED[op]} are not allowed in rule patterns")
        if op in _REPEATS:
            if in_repeat:
                raise SignatureError("nested repetition like (a+)+ is not allowed in rule patterns")
            repeats += 1 + _check_pattern(arg[2], in_repeat=True)
        elif op in (sre_constants.SUBPATTERN, sre_constants.ATOMIC_GROUP):
            repeats += _check_pattern(arg[-1], in_repeat)
        elif op == sre_constants.BRANCH:
            if in_repeat:
                raise SignatureError("alternation inside a repetition like (a|b)* is not allowed")
            repeats += sum(_check_pattern(branch, in_repeat) for branch in arg[1])
    return repeats


def _re_match(pattern: str, text: str) -> bool | None:
    return matcher(safe_pattern(pattern))(text)


def _round(number: float, *ndigits: int | None) -> float | None:
    """round(x) or round(x, n); a missing n is unknown, not "no digits"."""
    if number is None or (ndigits and ndigits[0] is None):
        return None
    if ndigits and abs(ndigits[0]) > MAX_ROUND_DIGITS:  # type: ignore[arg-type]
        raise ValueError(f"round() digits are limited to {MAX_ROUND_DIGITS}")
    return round(number, *ndigits)  # type: ignore[arg-type]


def _int(value: float | str) -> int:
    """int(); from text at most MAX_INT_TEXT characters (a VM owner controls user_attr)."""
    if isinstance(value, str) and len(value) > MAX_INT_TEXT:
        raise ValueError(f"int() of a text longer than {MAX_INT_TEXT} characters")
    return int(value)


def _glob(text: str, pattern: str) -> bool | None:
    return matcher(glob_pattern(pattern))(text)


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """fnmatch's translation (linear matching: it never backtracks across stars)."""
    return _compiled(fnmatch.translate(pattern))


def matcher(pattern: re.Pattern[str]) -> Callable[[str | None], bool | None]:
    """A compiled pattern as a rule sees it: None for missing text, the text bounded.

    The compiler binds literal patterns to one of these once per rule, so evaluation never
    parses a pattern again.
    """
    match = pattern.match

    def matches(text: str | None) -> bool | None:
        return None if text is None else match(text[:MAX_SUBJECT]) is not None

    return matches


def local_zone() -> dt.tzinfo:
    return ZoneInfo(settings.TIME_ZONE)


def _datetime(*args: int) -> dt.datetime:
    """datetime.datetime(...) in a rule: aware, in the service's TIME_ZONE, like `now`."""
    return dt.datetime(*args, tzinfo=local_zone())  # type: ignore[misc, arg-type]


def _duration(unit: str) -> Callable[[float], dt.timedelta]:
    def make(n: float) -> dt.timedelta:
        return dt.timedelta(**{unit: n})

    return make


# --- the tables --------------------------------------------------------------------------


def _fn(name: str, impl: Callable[..., object] | None, params: str, returns_: object,
        doc: str, example: str = "", **kw: object) -> Function:  # fmt: skip
    """Shorthand: params as "num,num?" (a trailing ? marks optional ones), kinds by name."""
    kinds = {"num": NUM, "str": frozenset({STR}), "tuple": frozenset({TUPLE}),
             "ordered": ANY_ORDERED, "seq": frozenset({STR, TUPLE}),
             "strs": frozenset({STR, TUPLE}), "int": frozenset({INT, BOOL}),
             "numstr": NUM | {STR}, "numdur": NUM | {DURATION}}  # fmt: skip
    parts = [p for p in params.split(",") if p]
    required = sum(1 for p in parts if not p.endswith("?"))
    spec = tuple(kinds[p.rstrip("?")] for p in parts)
    ret = returns_ if callable(returns_) else returns(str(returns_))
    kw.setdefault("plain", getattr(impl, "plain", None))
    return Function(name, impl, spec, required, ret, doc, example, **kw)  # type: ignore[arg-type]


def _duration_fn(unit: str) -> Function:
    return _fn(unit, null_safe(_duration(unit)), "num", DURATION,
               f"a duration of n {unit}", f"idle_for > {unit}(2)")  # fmt: skip


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        _duration_fn("minutes"),
        _duration_fn("hours"),
        _duration_fn("days"),
        _duration_fn("weeks"),
        _duration_fn("seconds"),
        _fn("min", _min, "ordered,ordered", same_as_args, "the smallest argument",
            "min(cpu_pct, gpu_pct) < 2", variadic=True, plain=min),
        _fn("max", _max, "ordered,ordered", same_as_args, "the largest argument",
            "max(net_rx_bps, net_tx_bps) < 1000", variadic=True, plain=max),
        _fn("abs", null_safe(abs), "numdur", same_as_args, "absolute value"),
        _fn("len", null_safe(len), "seq", INT, "length of a string or tuple", "len(name) > 3"),
        _fn("any", kleene_or, "tuple", lambda a: Type(BOOL, True),
            "true if any element is true (None if unknown)", "any((sessions > 0, busy_procs > 0))"),
        _fn("all", kleene_and, "tuple", lambda a: Type(BOOL, True),
            "true if every element is true (None if unknown)"),
        _fn("round", _round, "num,int?", same_as_args, "round a number"),
        _fn("int", null_safe(_int), "numstr", INT, "a whole number from a number or string"),
        _fn("float", null_safe(float), "numstr", FLOAT, "a number from a number or string"),
        _fn("re_match", _re_match, "str,str", BOOL,
            "regular expression (first argument, a literal) matches at the start of the text",
            're_match(r"^(test|tmp)-", name)', constant_args=(0,)),
        _fn("glob", _glob, "str,str", BOOL, "shell-style pattern (* ? [..]) matches the text",
            'glob(name, "test-*")', constant_args=(1,)),
        _fn("user_attr", None, "str", lambda a: Type(STR, True),
            "an attribute of the VM's USER_TEMPLATE (set by its owner: untrusted), or None",
            'user_attr("PROJECT") == "ci"', pure=False),
    ]
}  # fmt: skip

# Constructors reached through the `datetime` module.
CONSTRUCTORS: dict[str, Function] = {
    CLASS_TIMEDELTA: _fn(
        "datetime.timedelta", null_safe(dt.timedelta), "num?,num?", DURATION,
        "a duration", "datetime.timedelta(hours=4)",
        keywords=("weeks", "days", "hours", "minutes", "seconds"),
    ),
    CLASS_DATETIME: _fn(
        "datetime.datetime", _datetime, "int,int,int,int?,int?,int?", DATETIME,
        "a date and time in the service's time zone", "now < datetime.datetime(2027, 1, 1)",
    ),
    CLASS_DATE: _fn("datetime.date", dt.date, "int,int,int", DATE, "a date",
                    "now.date() == datetime.date(2026, 12, 24)"),
}  # fmt: skip


def _method(name: str, params: str, returns_: str, doc: str) -> Function:
    return _fn(name, None, params, returns_, doc)


# Attributes by receiver kind: a Type for a plain attribute, a Function for a method.
ATTRIBUTES: dict[str, dict[str, Type | Function]] = {
    DATETIME: {
        "year": Type(INT), "month": Type(INT), "day": Type(INT), "hour": Type(INT),
        "minute": Type(INT), "second": Type(INT),
        "weekday": _method("weekday", "", INT, "Monday is 0, Sunday 6"),
        "isoweekday": _method("isoweekday", "", INT, "Monday is 1, Sunday 7"),
        "date": _method("date", "", DATE, "the calendar date"),
        "timestamp": _method("timestamp", "", FLOAT, "seconds since the epoch"),
    },
    DATE: {
        "year": Type(INT), "month": Type(INT), "day": Type(INT),
        "weekday": _method("weekday", "", INT, "Monday is 0, Sunday 6"),
        "isoweekday": _method("isoweekday", "", INT, "Monday is 1, Sunday 7"),
    },
    DURATION: {
        "days": Type(INT), "seconds": Type(INT),
        "total_seconds": _method("total_seconds", "", FLOAT, "the duration in seconds"),
    },
    STR: {
        **{m: _method(m, "", STR, f"str.{m}()") for m in ("lower", "upper", "casefold")},
        **{m: _method(m, "str?", STR, f"str.{m}()") for m in ("strip", "lstrip", "rstrip")},
        "startswith": _method("startswith", "strs", BOOL, "starts with (one of) the prefix(es)"),
        "endswith": _method("endswith", "strs", BOOL, "ends with (one of) the suffix(es)"),
        "isdigit": _method("isdigit", "", BOOL, "only digits"),
    },
    MODULE_DATETIME: {
        "timedelta": Type(CLASS_TIMEDELTA),
        "datetime": Type(CLASS_DATETIME),
        "date": Type(CLASS_DATE),
    },
    MODULE_TIME: {"time": _fn("time.time", time.time, "", FLOAT, "seconds since the epoch",
                              pure=False)},
}  # fmt: skip

# The modules as rules see them: only the allowed attributes exist at run time either.
MODULES: dict[str, tuple[Type, object]] = {
    "datetime": (
        Type(MODULE_DATETIME),
        SimpleNamespace(timedelta=dt.timedelta, datetime=_datetime, date=dt.date),
    ),
    "time": (Type(MODULE_TIME), SimpleNamespace(time=time.time)),
}
