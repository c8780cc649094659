# ruff: noqa: RUF001  (lookalike characters on purpose)
"""Property-based tests of the rule validator: whatever passes it stays inside the sandbox.

(a) Expressions from a grammar that mixes allowed pieces (fields, functions, allow-listed
    attributes, the operators) with forbidden ones (random and dunder names and attributes,
    calls of anything, lambdas, comprehensions, formatting...): every one that compiles uses
    only allowed names, attributes and node kinds, and evaluates on random VM values to a
    value or an ordinary exception, quickly.
(b) Random text only ever makes the checker raise RuleError.
(c) Missing data never matches, however it is negated.
"""

from __future__ import annotations

import ast
import signal
import time
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idlevm.rules.checker import RuleError, check
from idlevm.rules.compiler import compile_rule
from idlevm.rules.fields import FIELDS
from idlevm.rules.functions import ATTRIBUTES, FUNCTIONS, MODULES
from idlevm.rules.types import BOOL, DATETIME, DURATION, FLOAT, INT, STR

NOW = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)

ALLOWED_NAMES = set(FIELDS) | {"now"} | set(MODULES) | set(FUNCTIONS)
ALLOWED_ATTRIBUTES = {attr for members in ATTRIBUTES.values() for attr in members}
ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.Call, ast.keyword, ast.Attribute, ast.Name, ast.Load,
    ast.Constant, ast.Tuple, ast.List, ast.Subscript, ast.Slice, ast.IfExp,
)  # fmt: skip
ORDINARY = (ArithmeticError, ValueError, TypeError, IndexError)

FAST = settings(
    max_examples=400,
    deadline=500,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def fields_of(*kinds: str, nullable: bool | None = None) -> list[str]:
    return sorted(
        name
        for name, f in FIELDS.items()
        if f.type.kind in kinds and (nullable is None or f.type.nullable == nullable)
    )


# --- the grammar ---------------------------------------------------------------------------

DUNDERS = ["__class__", "__globals__", "__dict__", "__subclasses__", "__mro__", "__builtins__",
           "__import__", "__init__", "__code__", "__self__", "__loader__", "__bases__"]  # fmt: skip
BAD_NAMES = ["eval", "exec", "getattr", "open", "type", "object", "vars", "globals", "locals",
             "compile", "breakpoint", "help", "print", "_compare", "_k0", "_arith", "x",
             "Ellipsis"]  # fmt: skip
BAD_ATTRIBUTES = ["format", "format_map", "ljust", "center", "zfill", "replace", "join",
                  "expandtabs", "sleep", "sys", "now", "max", "tzinfo", "gi_frame", "mro",
                  "strftime", "encode", "split", "real", "fromtimestamp"]  # fmt: skip

identifier = st.from_regex(r"\A_{0,2}[a-z][a-z_]{0,6}_{0,2}\Z")
bad_name = st.sampled_from(BAD_NAMES + DUNDERS) | identifier
any_attribute = st.one_of(
    st.sampled_from(sorted(ALLOWED_ATTRIBUTES)),
    st.sampled_from(BAD_ATTRIBUTES + DUNDERS),
    identifier,
)

ints = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([0, 1, -1, 8, 9, 10**9, 10**18, 10**18 + 1, -(10**18), 10**30]),
).map(str)
floats = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["1e308", "1e-308", "0.0", "1e999"]),
)
strings = st.text(alphabet=st.sampled_from("ab-_*?[]()|+.\\^$ci0é%{}"), max_size=12).map(repr)
patterns = st.sampled_from(
    ['"^ci-[0-9]+$"', '"test"', '"(a+)+$"', '"(a|aa)*$"', '"a*a*a*$"', r'r"(a)\1"', '"(?=a)"',
     '"[ab]*c"', '"["', '"x*"', '"' + "a" * 201 + '"'])  # fmt: skip
globs = st.sampled_from(['"test-*"', '"*a*a*a*c"', '"[!a]*"', '"?"', '"[a-"'])

num_fields = st.sampled_from(fields_of(INT, FLOAT))
str_fields = st.sampled_from(fields_of(STR))
bool_fields = st.sampled_from(fields_of(BOOL))
dur_fields = st.sampled_from(fields_of(DURATION))
dt_fields = st.sampled_from([*fields_of(DATETIME), "now"])


def forbidden(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A forbidden piece, possibly wrapping an allowed one."""
    return st.one_of(
        bad_name,
        st.builds("{}.{}".format, inner, st.sampled_from(DUNDERS + BAD_ATTRIBUTES)),
        st.builds("{}({})".format, bad_name, inner),
        st.builds("({})()".format, inner),
        st.builds("(lambda: {})()".format, inner),
        st.builds("[x for x in {}]".format, inner),
        st.builds("(x for x in ({},)).gi_frame".format, inner),
        st.builds("(x := {})".format, inner),
        st.builds("{{{}: 1}}".format, inner),
        st.builds("{{{}}}".format, inner),
        st.builds('f"{{{}}}"'.format, inner),
        st.builds('"%s" % {}'.format, inner),
        st.builds("{} * 1000000000".format, inner),
        st.builds("{} << 64".format, inner),
        st.builds("~{}".format, inner),
        st.builds("{} ** {}".format, inner, inner),
        st.builds("{}[0]".format, inner),
        st.builds("{}(*{})".format, st.sampled_from(sorted(FUNCTIONS)), inner),
        st.builds("hours(**{{'n': {}}})".format, inner),
        st.sampled_from(["...", "b'x'", "1j", "()", "__builtins__", "[]"]),
    )


def grammar() -> tuple[st.SearchStrategy[str], ...]:
    """Typed strategies for numbers, strings, durations, datetimes and truth values."""
    num: st.SearchStrategy[str] = st.deferred(lambda: num_)
    text: st.SearchStrategy[str] = st.deferred(lambda: text_)
    dur: st.SearchStrategy[str] = st.deferred(lambda: dur_)
    when: st.SearchStrategy[str] = st.deferred(lambda: when_)
    truth: st.SearchStrategy[str] = st.deferred(lambda: truth_)
    anything = st.one_of(num, text, dur, when, truth)
    bad = forbidden(anything)

    def mostly(*good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        """One of the allowed shapes 19 times in 20, else a forbidden piece."""
        return st.sampled_from([st.one_of(*good)] * 19 + [bad]).flatmap(lambda s: s)

    def op(ops: str, a: st.SearchStrategy[str], b: st.SearchStrategy[str]):
        return st.builds("({} {} {})".format, a, st.sampled_from(ops.split()), b)

    def call(fn: str, *args: st.SearchStrategy[str]):
        return st.tuples(*args).map(lambda xs: f"{fn}({', '.join(xs)})")

    num_ = mostly(
        num_fields, ints, floats, st.sampled_from(["now.hour", "now.year", "time.time()"]),
        op("+ - * / // % + -", num, num),
        st.builds("({} ** {})".format, num, st.integers(-10, 10).map(str)),
        st.builds("-{}".format, num),
        call("abs", num), call("len", text), call("min", num, num), call("max", num, num),
        call("round", num, ints), call("int", text | num), call("float", text | num),
        st.builds("{}.days".format, dur), st.builds("{}.total_seconds()".format, dur),
        st.builds("{}.weekday()".format, when),
        st.builds("{}.{}".format, st.sampled_from(["now", "started", "idle_for"]), any_attribute),
    )  # fmt: skip
    text_ = mostly(
        str_fields, strings, call("user_attr", strings),
        st.builds("{}.{}()".format, text, st.sampled_from(["lower", "upper", "strip"])),
        st.builds("{}[{}:{}]".format, text, ints, ints), st.builds("{}[{}]".format, text, ints),
        op("+", text, text), st.builds("({} if {} else {})".format, text, truth, text),
        st.builds("{}.{}".format, text, any_attribute),
        st.builds("{}.{}({})".format, text, any_attribute, anything),
    )  # fmt: skip
    dur_ = mostly(
        dur_fields,
        st.builds("{}({})".format, st.sampled_from(["hours", "minutes", "days", "seconds"]), num),
        st.builds("datetime.timedelta({}={})".format,
                  st.sampled_from(["hours", "days", "microseconds"]), num),
        op("+ -", dur, dur), op("* /", dur, num), st.builds("({} - {})".format, when, when),
        call("abs", dur),
    )  # fmt: skip
    when_ = mostly(
        dt_fields, op("+ -", when, dur),
        st.builds("datetime.datetime(2026, {}, {})".format, ints, ints),
        st.builds("datetime.{}".format, any_attribute),
        st.builds("{}.{}".format, st.sampled_from(["datetime.datetime", "time"]), any_attribute),
    )  # fmt: skip
    truth_ = mostly(
        bool_fields, st.sampled_from(["True", "False", "None"]),
        op("< <= > >= == !=", num, num), op("< >= ==", dur, dur), op("< >", when, when),
        op("== != in", text, text), op("in", text, st.lists(text, max_size=3).map(
            lambda xs: "(" + "".join(x + ", " for x in xs) + ")")),
        st.builds("({} is None)".format, anything), st.builds("(not {})".format, truth),
        op("and or", truth, truth), st.builds("({} if {} else {})".format, truth, truth, truth),
        st.builds("{}.startswith({})".format, text, text),
        st.builds("re_match({}, {})".format, patterns | text, text),
        st.builds("glob({}, {})".format, text, globs | text),
        st.builds("any(({}, {}))".format, truth, truth),
        # attributes and methods of every kind of receiver, allowed or not
        st.builds("({}.{}({}) == {})".format, text, any_attribute,
                  st.sampled_from(["", "'a'", "name", "('a', 'b')", "1"]), text),
        st.builds("({}.{} == {})".format, when | dur | text, any_attribute, num),
        st.builds("({}.{}() == {})".format, when | dur, any_attribute, num),
    )  # fmt: skip
    return num_, text_, dur_, when_, truth_


NUM, TEXT, DUR, WHEN, TRUTH = grammar()
expressions = st.sampled_from([TRUTH] * 8 + [NUM, TEXT]).flatmap(lambda s: s)


def field_value(name: str) -> st.SearchStrategy[object]:
    t = FIELDS[name].type
    value: st.SearchStrategy[object] = {
        BOOL: st.booleans(),
        INT: st.integers(-(2**63), 2**63),
        FLOAT: st.floats(allow_nan=True, allow_infinity=True),
        STR: st.text(max_size=40),
        DURATION: st.timedeltas(min_value=timedelta(0)),
        DATETIME: st.datetimes(timezones=st.just(UTC)),
    }[t.kind]
    return st.none() | value if t.nullable else value


vm_values = st.fixed_dictionaries({name: field_value(name) for name in FIELDS}).flatmap(
    lambda values: st.dictionaries(st.sampled_from(["PROJECT", "X"]), st.text(max_size=10)).map(
        lambda template: {**values, "user_attr": template.get}
    )
)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """A hard limit (signals interrupt long C loops in re and int arithmetic too)."""

    def alarm(signum, frame):
        raise Hang(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_inside_the_sandbox(expression: str) -> None:
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:  # the checker parses in parentheses: `idle) or (idle` passes there
        tree = ast.parse(f"(\n{expression}\n)", mode="eval")
    for node in ast.walk(tree):
        assert isinstance(node, ALLOWED_NODES), ast.dump(node)
        if isinstance(node, ast.Name):
            assert node.id in ALLOWED_NAMES, node.id
            assert not node.id.startswith("_"), node.id
        if isinstance(node, ast.Attribute):
            assert node.attr in ALLOWED_ATTRIBUTES, node.attr
            assert not node.attr.startswith("_"), node.attr
        if isinstance(node, ast.Constant):
            assert node.value is None or type(node.value) in (bool, int, float, str)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name | ast.Attribute)
            assert all(k.arg is not None for k in node.keywords)
            assert not any(isinstance(a, ast.Starred) for a in node.args)
    for node in ast.walk(tree):  # a function name is only ever called
        if isinstance(node, ast.Name) and node.id in FUNCTIONS:
            assert any(isinstance(c, ast.Call) and c.func is node for c in ast.walk(tree)), node.id


# --- (a) whatever compiles stays inside ---------------------------------------------------

compiled_count = {"valid": 0, "all": 0}


@FAST
@given(expression=expressions, values=vm_values)
def test_whatever_compiles_uses_only_allowed_pieces_and_evaluates_quickly(expression, values):
    compiled_count["all"] += 1
    try:
        with time_limit(2.0):
            rule = compile_rule(expression, NOW)
    except RuleError as error:
        assert error.message
        return
    compiled_count["valid"] += 1
    assert_inside_the_sandbox(expression)
    assert rule.globals["__builtins__"] == {}
    assert rule.fields <= set(FIELDS) | {"user_attr"}
    started = time.perf_counter()
    try:
        with time_limit(2.0):
            rule.evaluate({name: values[name] for name in rule.fields})
    except ORDINARY:
        pass
    assert time.perf_counter() - started < 0.5, expression


def test_the_grammar_produces_enough_valid_expressions():
    """Guard against a grammar that only ever tests the refusals."""
    seen = []

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(expression=expressions)
    def collect(expression):
        try:
            check(expression)
            seen.append(True)
        except RuleError:
            seen.append(False)

    collect()
    assert sum(seen) >= 30, f"{sum(seen)} of {len(seen)} valid"
    assert len(seen) - sum(seen) >= 30


# --- (b) any text: RuleError or valid, nothing else ----------------------------------------

python_ish = st.lists(
    st.sampled_from([*"()[]{}.,:;=*+-/%<>!~^&|@'\"\\\n\t #_0123456789abcdefxyz",
                     "idle", "name", "now", " and ", " not ", " lambda ", "__", "hours(",
                     "re_match(", "\x00", "ｅ", "︳", "é", "1e999", " < ", " == "]),
    max_size=40,
).map("".join)  # fmt: skip


@FAST
@given(source=st.text(max_size=200) | python_ish)
def test_random_text_only_ever_raises_rule_error(source):
    try:
        with time_limit(2.0):
            checked = check(source)
    except RuleError as error:
        assert isinstance(error.message, str) and error.message
        assert error.line is None or error.line >= 0
        return
    assert_inside_the_sandbox(checked.source)


@settings(max_examples=50, derandomize=True, database=None, deadline=None)
@given(source=st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_random_bytes_as_text_only_ever_raise_rule_error(source):
    with suppress(RuleError):
        check(source)


# --- (c) missing data never matches, whatever surrounds it --------------------------------

nullable_num = st.sampled_from(fields_of(INT, FLOAT, nullable=True))
nullable_dur = st.sampled_from(fields_of(DURATION, nullable=True))


def three_valued() -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.just("idle"),
        st.builds("{} {} {}".format, nullable_num, st.sampled_from(["<", ">=", "==", "!="]),
                  st.integers(-5, 5).map(str)),
        st.builds("{} {} hours({})".format, nullable_dur, st.sampled_from(["<", ">"]),
                  st.integers(0, 9).map(str)),
        st.builds("{} + 1 > {}".format, nullable_num, nullable_num),
        st.builds("-{} < 0".format, nullable_num),
        st.builds("max({}, {}) < 3".format, nullable_num, nullable_num),
        st.builds("idle_since < now - hours({})".format, st.integers(0, 9).map(str)),
        st.builds("started.hour == {}".format, st.integers(0, 23).map(str)),
        st.builds("round({}) == 0".format, nullable_num),
        st.sampled_from(["True", "False", "exempt", "not stale", "memory > 0", "idle is None",
                         "cpu_pct is not None", "any((idle, sessions > 0))",
                         "all((idle, True))"]),
    )  # fmt: skip
    return st.recursive(
        leaf.map("({})".format),
        lambda inner: st.one_of(
            st.builds("(not {})".format, inner),
            st.builds("({} and {})".format, inner, inner),
            st.builds("({} or {})".format, inner, inner),
            st.builds("({} if {} else {})".format, inner, inner, inner),
            st.builds("({} == {})".format, inner, inner),
        ),
        max_leaves=8,
    )


MISSING = {
    name: None if f.type.nullable else {BOOL: False, INT: 1, FLOAT: 1.0, STR: "vm"}.get(f.type.kind)
    for name, f in FIELDS.items()
}


@FAST
@given(expression=three_valued())
def test_negating_an_unknown_never_makes_it_match(expression):
    inner = compile_rule(expression, NOW)
    outer = compile_rule(f"not ({expression})", NOW)
    values = {**MISSING, "exempt": False, "stale": True}
    value = inner.evaluate(values)
    assert value is None or isinstance(value, bool), (expression, value)
    if value is None:
        assert not inner.matches(values)
        assert outer.evaluate(values) is None, expression
        assert not outer.matches(values), expression
        double = compile_rule(f"not (not ({expression}))", NOW)
        assert not double.matches(values), expression
    else:
        assert outer.evaluate(values) is (not value), expression


@pytest.mark.parametrize(
    "expression", ["cpu_pct < 1", "idle and cpu_pct < 1", "not (cpu_pct < 1 or sessions == 0)"]
)
def test_known_unknowns(expression):
    assert compile_rule(expression, NOW).evaluate(MISSING) is None
