"""The rule language: what it accepts, what it refuses (and where), and what missing data does."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from idlevm.rules.checker import RuleError, check
from idlevm.rules.compiler import compile_rule

NOW = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # a Wednesday evening
FULL = {
    "id": 12, "name": "test-42", "owner": "alice", "group": "physics", "state": "ACTIVE",
    "lcm_state": "RUNNING", "idle": True, "idle_for": timedelta(hours=5), "cpu_pct": 0.4,
    "net_rx_bps": 100.0, "net_tx_bps": 20.0, "data_age": timedelta(minutes=2),
    "exempt": False, "sessions": 0, "memory": 4096, "host": "node1",
    "idle_since": NOW - timedelta(hours=5), "uptime": timedelta(days=9),
}  # fmt: skip
MISSING = {**FULL, "idle": None, "idle_for": None, "cpu_pct": None, "net_rx_bps": None,
           "net_tx_bps": None, "sessions": None, "idle_since": None}  # fmt: skip


def value(expression: str, values: dict[str, object] = FULL) -> object:
    rule = compile_rule(expression, NOW)
    return rule.evaluate({name: values.get(name) for name in rule.fields})


def matches(expression: str, values: dict[str, object] = FULL) -> bool:
    rule = compile_rule(expression, NOW)
    return rule.matches({name: values.get(name) for name in rule.fields})


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("idle and idle_for > hours(4)", True),
        ("idle_for > hours(6)", False),
        ("idle_for >= datetime.timedelta(hours=4, minutes=59)", True),
        ("now.hour >= 20 or now.weekday() >= 5", True),
        ("now.isoweekday() == 3 and now.date() == datetime.date(2026, 11, 25)", True),
        ("now < datetime.datetime(2027, 1, 1)", True),
        ('name.startswith(("test-", "tmp-"))', True),
        ('name.upper().endswith("-42")', True),
        ('re_match(r"test-[0-9]+$", name)', True),
        ('re_match(r"prod", name)', False),
        ('glob(name, "test-*")', True),
        ('owner in ("alice", "bob") and group not in ["admins"]', True),
        ('"st" in name', True),
        ("max(net_rx_bps, net_tx_bps) < 1000", True),
        ("min(cpu_pct, 5) < 1", True),
        ("abs(cpu_pct - 1) < 1", True),
        ("round(cpu_pct) == 0", True),
        ("len(name) == 7 and name[:4] == 'test'", True),
        ("memory / 1024 >= 4 and memory // 1000 == 4 and memory % 2 == 0", True),
        ("2 ** 3 == 8", True),
        ("idle_since < now - hours(4)", True),
        ("uptime > days(7) and data_age < minutes(10)", True),
        ("(idle_for - hours(1)) / hours(1) > 3.5", True),
        ("cpu_pct < 1 if idle else False", True),
        ("any((sessions > 0, cpu_pct > 50))", False),
        ("all((idle, cpu_pct < 1))", True),
        ("int('7') == 7 and float(1) == 1.0", True),
        ("time.time() > 0", True),
        ('state == "ACTIVE" and lcm_state == "RUNNING"', True),
        ("not exempt", True),
        ("1 < cpu_pct < 5", False),
        ("idle is not None", True),
    ],
)
def test_valid_expressions_evaluate_like_python(expression, expected):
    assert value(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "idle",
        "idle and idle_for > hours(4)",
        "not idle",
        "not (idle_for > hours(4))",
        "not (idle_for < hours(4))",
        "idle_for != hours(1)",
        "not (idle or cpu_pct > 5)",
        "not (cpu_pct > 5 or net_rx_bps > 100)",
        "not not not idle",
        "idle_for + hours(1) > hours(2)",
        "not (idle_for + hours(1) > hours(2))",
        "-cpu_pct < 0",
        "not (-cpu_pct < 0)",
        "idle_since.hour >= 0",
        "not (idle_since.hour >= 0)",
        "(cpu_pct < 5) == True",
        "(cpu_pct < 5) != False",
        "not ((cpu_pct < 5) == False)",
        "1 < cpu_pct < 5 or not (1 < cpu_pct < 5)",
        "(True if idle else False) or not (True if idle else False)",
        "not any((cpu_pct > 1, sessions > 0))",
        "not all((cpu_pct > 1, idle))",
        "max(cpu_pct, 1) < 100",
        "not (max(cpu_pct, 1) < 100)",
        "hours(cpu_pct) < days(1)",
        "sessions == 0",
        "not (sessions == 0)",
    ],
)
def test_missing_data_never_matches_whatever_the_negations(expression):
    """Missing or stale data (None) is unknown: no rule matches it by accident."""
    assert matches(expression, MISSING) is False


def test_missing_data_is_unknown_not_false():
    assert value("idle_for > hours(4)", MISSING) is None
    assert value("not (idle_for > hours(4))", MISSING) is None
    assert value("idle_for > hours(4) or owner == 'alice'", MISSING) is True  # known either way
    assert value("idle_for > hours(4) and owner == 'bob'", MISSING) is False


def test_missing_data_can_be_tested_explicitly():
    assert matches("idle is None and owner == 'alice'", MISSING)
    assert not matches("idle is None", FULL)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("idle_for > 4", "write a duration as hours(4)"),
        ("idel", "unknown name 'idel' (did you mean 'idle'?)"),
        ('state == "ACTIV"', "not an OpenNebula state name (did you mean 'ACTIVE'?)"),
        ('lcm_state == "RUNING"', "not an OpenNebula lcm state name"),
        ("name == 3", "never equal"),
        ("cpu_pct", "must be true or false"),
        ("idle and cpu_pct", "'and' joins true/false values"),
        ("hours", "hours is a function"),
        ("now.weekday", "is a method: call it"),
        ("now.tzinfo", "has no attribute 'tzinfo'"),
        ("name * 3 == ''", "repetition"),
        ("'%s' % name == ''", "string formatting"),
        ("idle_for > hours(4", "line 1, column 17: syntax error: '(' was never closed"),
        ("idle and\n  (idle_for > hours(2)", "line 2, column 3: syntax error: '(' was never"),
        ("idle) or (idle", "line 1, column 5: syntax error: unmatched ')'"),
        ("hours(1, 2) > idle_for", "hours() takes 1 argument(s), 2 given"),
        ("hours('4') > idle_for", "hours() argument 1 cannot be a string"),
        ("datetime.timedelta(years=1) > idle_for", "does not take keyword 'years'"),
        ("re_match(name, 'x')", "must be a literal string"),
        ('re_match("(a+)+$", name)', "nested repetition"),
        ('re_match("(a|aa)*$", name)', "alternation inside a repetition"),
        ('re_match("a*a*a*b", name)', "at most 2 repetitions"),
        ('re_match(r"(a)\\1", name)', "backreferences"),
        ('re_match("(?=a)", name)', "lookahead"),
        ("round(5, -10**8) == 0", "round() fails: round() digits are limited to 15"),
        ("cpu_pct > 1 / 0", "this arithmetic fails: division by zero"),
        ("idle is True", "'is' only tests for None"),
        ("hours(999999999999) > idle_for", "hours() fails"),
        ("cpu_pct ** cpu_pct > 1", "exponents must be literal numbers"),
        ("x" * 2001, "longer than 2000 characters"),
        ("", "empty"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression, message):
    with pytest.raises(RuleError) as error:
        compile_rule(expression)  # as when a rule is saved: without a cycle's `now`
    assert message in str(error.value)


def test_a_part_that_fails_only_at_this_time_fails_where_python_would_reach_it():
    """Valid when saved; at midnight `1 / now.hour` fails, but is never reached here."""
    rule = "idle and (now.hour == 0 or 24 / now.hour > 1)"
    compile_rule(rule)  # the check: fine
    midnight = NOW.replace(hour=0)
    assert compile_rule(rule, midnight).matches({"idle": True})
    late = compile_rule("idle and 24 / (now.hour - 22) > 1", NOW.replace(hour=22))
    with pytest.raises(ValueError, match="division by zero"):
        late.matches({"idle": True})  # reached: the rule fails (rule_failed), matches nothing


def test_missing_values_inside_tuples_and_slices_are_unknown():
    missing = {"sessions": None, "busy_procs": None, "idle": None, "name": "web-01",
               "host_id": None, "cpu_pct": 0.4}  # fmt: skip
    for expression in ["0 not in (sessions,)", "not (0 in (sessions, busy_procs))",
                       "(idle, sessions) != (False, 1)", 'name[:host_id] == "web-01"',
                       "not (name[sessions:] == name)", "round(cpu_pct, host_id) < 1"]:  # fmt: skip
        assert value(expression, missing) is None, expression
        assert not matches(expression, missing), expression
    assert value("0 in (sessions, 0)", missing) is True  # found among the known ones


def test_int_of_a_long_text_is_refused_not_computed():
    rule = compile_rule('int(user_attr("A")) > 0', NOW)
    with pytest.raises(ValueError, match="longer than 30"):
        rule.matches({"user_attr": {"A": "9" * 4000}.get})


def test_round_with_huge_digits_from_a_vm_field_fails_fast_instead_of_hanging():
    rule = compile_rule("round(5, sessions) == 0", NOW)
    with pytest.raises(ValueError, match="limited to 15"):
        rule.evaluate({"sessions": -(10**18)})


def test_errors_give_line_and_column_in_characters():
    with pytest.raises(RuleError) as error:
        check('name == "é" and\n  idle_for > 4')
    assert (error.value.line, error.value.column) == (2, 3)
    assert str(error.value).startswith("line 2, column 3: cannot order a duration")
    with pytest.raises(RuleError) as error:
        check('name == "ééé" and idel')
    assert (error.value.line, error.value.column) == (1, 19)


def test_constant_calls_are_computed_once_at_compile_time():
    rule = compile_rule("idle_for > hours(4) and idle_for < datetime.timedelta(days=2)", NOW)
    folded = [v for k, v in rule.globals.items() if k.startswith("_k")]
    assert timedelta(hours=4) in folded and timedelta(days=2) in folded
    assert "hours" not in rule.code.co_names  # no call left to make per VM


def test_evaluation_has_no_builtins_and_reads_only_the_fields_it_names():
    rule = compile_rule("idle and owner == 'alice'", NOW)
    assert rule.globals["__builtins__"] == {}
    assert rule.fields == {"idle", "owner"}


def test_now_is_the_evaluation_time_bound_per_cycle():
    later = NOW + timedelta(hours=3)  # 01:30 on Thursday
    assert compile_rule("now.hour >= 20", NOW).matches({})
    assert not compile_rule("now.hour >= 20", later).matches({})


def test_a_missing_method_argument_makes_the_result_unknown():
    """name.strip(None) would strip whitespace and match; unknown must stay unknown."""
    rule = compile_rule('name.strip(user_attr("Y")) == "n"', NOW)
    assert rule.evaluate({"name": " n ", "user_attr": {}.get}) is None
    assert not rule.matches({"name": " n ", "user_attr": {}.get})
    assert rule.matches({"name": "xnx", "user_attr": {"Y": "x"}.get})


def test_methods_of_values_that_may_be_missing_are_unknown_when_missing():
    rule = compile_rule('user_attr("TEAM").lower() == "ml"', NOW)
    assert rule.matches({"user_attr": {"TEAM": "ML"}.get})
    assert rule.evaluate({"user_attr": {}.get}) is None


@pytest.mark.parametrize(
    "expression, message",
    [
        ("datetime is None", "datetime is not a value"),
        ("(datetime.timedelta,) == ()", "datetime.timedelta is not a value"),
        ("~memory > 0", "the bitwise operator ~ is not allowed"),
        ("__import__('os')", "names starting with _ are not allowed: '__import__'"),
    ],
)
def test_modules_classes_and_bitwise_operators_are_not_values(expression, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        compile_rule(expression, NOW)


def test_folded_arithmetic_errors_count_columns_in_characters():
    with pytest.raises(RuleError) as error:
        compile_rule('name == "ééé" or 1/0 == 1')
    assert (error.value.line, error.value.column) == (1, 18)


def test_user_attr_reads_the_vm_user_template_as_untrusted_text():
    rule = compile_rule('user_attr("PROJECT") == "ci"', NOW)
    template = {"PROJECT": "ci"}
    assert rule.matches({"user_attr": template.get})
    assert not rule.matches({"user_attr": {}.get})
