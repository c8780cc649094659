# ruff: noqa: RUF001  (lookalike characters are the point of several cases)
"""Trying hard to break out of the rule sandbox: every known escape must be refused statically.

A rule is compiled Python evaluated with `__builtins__` empty, so the checker's allow-lists
(names, attributes, node kinds, sizes) are the sandbox. Each case below is a known way out of
a Python "restricted eval" (dunder walks, builtins, format strings, frames, unicode
lookalikes) or a way to make it burn CPU or memory (huge numbers, repetition, nesting,
catastrophic regular expressions); `compile_rule` must refuse every one with a RuleError,
before anything runs.
"""

from __future__ import annotations

import ast
import contextlib
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from idlevm.rules.checker import RuleError
from idlevm.rules.compiler import BASE_GLOBALS, HELPERS, compile_rule
from idlevm.rules.fields import FIELDS
from idlevm.rules.functions import ATTRIBUTES, FUNCTIONS, MODULES

NOW = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # a Wednesday evening

SAMPLE = {
    "id": 12, "name": "ci-42", "owner": "alice", "group": "physics", "uid": 5, "gid": 100,
    "host": "node1", "host_id": 3, "state": "ACTIVE", "lcm_state": "RUNNING", "cpu": 2.0,
    "vcpu": 2, "memory": 4096, "started": NOW - timedelta(days=9),
    "uptime": timedelta(days=9), "exempt": False, "stale": False,
    "data_age": timedelta(minutes=2), "idle": True, "idle_for": timedelta(hours=5),
    "idle_since": NOW - timedelta(hours=5), "cpu_pct": 0.4, "steal_pct": 0.0, "load": 0.01,
    "disk_bps": 10.0, "net_rx_bps": 100.0, "net_tx_bps": 20.0, "sessions": 0,
    "input_age": timedelta(hours=9), "busy_procs": 0, "gpu_pct": None,
    "user_attr": {"PROJECT": "ci"}.get,
}  # fmt: skip

LONG_SUM = " + ".join(["cpu_pct"] * 300) + " > 1"  # > 2000 characters

# (expression, a fragment the error message must contain, or "" for any RuleError)
ESCAPES = [
    # --- dunder walks --------------------------------------------------------------------
    pytest.param("().__class__.__bases__[0].__subclasses__()", "_", id="tuple-subclasses"),
    pytest.param("name.__class__ == name", "attributes starting with _ are not allowed",
                 id="str-class"),
    pytest.param("now.__class__.__mro__ == ()", "'__mro__'", id="datetime-mro"),
    pytest.param("hours.__globals__ == 1", "_", id="function-globals"),
    pytest.param("hours(1).__class__.__init__.__globals__ == 1", "_", id="result-globals"),
    pytest.param("datetime.__dict__ == 1", "_", id="module-dict"),
    pytest.param("time.__loader__ == 1", "_", id="module-loader"),
    pytest.param("time.time.__self__ == 1", "_", id="builtin-self"),
    pytest.param("datetime.datetime.__init__ == 1", "_", id="class-init"),
    pytest.param('"".__class__.__mro__[1].__subclasses__()', "_", id="str-subclasses"),
    pytest.param("name.upper.__self__ == name", "_", id="method-self"),
    pytest.param("now.date().__reduce_ex__(2)", "_", id="reduce-ex"),
    pytest.param("user_attr('X').__class__ == 1", "_", id="user-attr-class"),
    pytest.param("[].__class__ == 1", "_", id="list-class"),
    pytest.param("_compare == 1", "names starting with _ are not allowed", id="helper-name"),
    pytest.param("_k0 == 1", "names starting with _", id="folded-constant-name"),
    # --- builtins, by name -----------------------------------------------------------------
    pytest.param("getattr(name, 'upper')() == ''", "cannot be called", id="getattr"),
    pytest.param("vars() == 1", "", id="vars"),
    pytest.param("globals()['__builtins__'] == 1", "", id="globals"),
    pytest.param("locals() == 1", "", id="locals"),
    pytest.param("eval('1') == 1", "", id="eval"),
    pytest.param("exec('import os') is None", "", id="exec"),
    pytest.param("compile('1', '', 'eval') is None", "", id="compile"),
    pytest.param("open('/etc/passwd') is None", "", id="open"),
    pytest.param("__import__('os').system('id') == 0", "names starting with _",
                 id="import"),
    pytest.param("__import__ == 1", "names starting with _", id="import-name"),
    pytest.param("breakpoint() is None", "", id="breakpoint"),
    pytest.param("help() is None", "", id="help"),
    pytest.param("type(name) == 1", "", id="type"),
    pytest.param("object == 1", "unknown name 'object'", id="object"),
    pytest.param("__builtins__ == 1", "names starting with _", id="builtins-name"),
    pytest.param("__builtins__['eval']('1') == 1", "", id="builtins-subscript"),
    pytest.param("print(name) is None", "", id="print"),
    pytest.param("setattr(now, 'x', 1) is None", "", id="setattr"),
    pytest.param("bytearray(10 ** 8) == 1", "", id="bytearray"),
    pytest.param("range(10 ** 18) == 1", "", id="range"),
    pytest.param("super() == 1", "", id="super"),
    pytest.param("id(name) == 1", "cannot be called", id="field-called"),
    pytest.param("now() == now", "cannot be called", id="now-called"),
    pytest.param("user_attr == 1", "user_attr is a function", id="user-attr-uncalled"),
    # --- format strings --------------------------------------------------------------------
    pytest.param('"{0.__class__}".format(name) == ""', "has no attribute 'format'",
                 id="format-attr"),
    pytest.param('"{.__globals__}".format(hours) == ""', "", id="format-globals"),
    pytest.param('"{x.__class__}".format_map(name) == ""', "", id="format-map"),
    pytest.param('"%s" % name == ""', "string formatting is not allowed", id="percent"),
    pytest.param('"%(a)s" % (name,) == ""', "", id="percent-tuple"),
    pytest.param('f"{name.__class__}" == ""', "an f-string is not allowed", id="fstring"),
    pytest.param("f\"{name:{'>'}{10**9}}\" == ''", "f-string", id="fstring-nested-spec"),
    pytest.param('f"{name!r}" == ""', "f-string", id="fstring-conversion"),
    # --- generators, frames, comprehensions, lambda, walrus -------------------------------
    pytest.param("(x for x in ()).gi_frame == 1", "a generator is not allowed", id="gi-frame"),
    pytest.param("[x for x in name] == []", "comprehension", id="listcomp"),
    pytest.param("{x for x in name} == 1", "comprehension", id="setcomp"),
    pytest.param("{x: 1 for x in name} == 1", "comprehension", id="dictcomp"),
    pytest.param("(lambda: 1)() == 1", "", id="lambda-call"),
    pytest.param("(lambda: 0).__code__ == 1", "_", id="lambda-code"),
    pytest.param("(x := 1) == 1", "assignment (:=) is not allowed", id="walrus"),
    pytest.param("(name := 'x') == 'x'", "", id="walrus-field"),
    # --- module attributes beyond the allow-list ------------------------------------------
    pytest.param("datetime.sys == 1", "has no attribute 'sys'", id="datetime-sys"),
    pytest.param("time.sleep(100) is None", "has no attribute 'sleep'", id="time-sleep"),
    pytest.param("datetime.datetime.now() < now", "", id="datetime-now"),
    pytest.param("datetime.timedelta.max > idle_for", "", id="timedelta-max"),
    pytest.param("datetime.datetime.fromtimestamp(0) < now", "", id="fromtimestamp"),
    pytest.param("datetime.datetime.strptime('1', '%d') < now", "", id="strptime"),
    pytest.param("time.time == 1", "time.time is a function", id="time-uncalled"),
    pytest.param("now.tzinfo is None", "has no attribute 'tzinfo'", id="tzinfo"),
    pytest.param("now.replace(year=1) < now", "", id="replace"),
    pytest.param("now.strftime('%s') == ''", "", id="strftime"),
    pytest.param("idle_for.max > idle_for", "", id="timedelta-instance-max"),
    # --- unicode lookalikes (NFKC-normalised by the parser) --------------------------------
    pytest.param("ｅｖａｌ('1') == 1", "", id="fullwidth-eval"),
    pytest.param("＿＿import＿＿('os') == 1", "invalid character", id="fullwidth-underscore"),
    pytest.param("_︳builtins︳_ == 1", "are not allowed: '__builtins__'",
                 id="vertical-low-line-builtins"),
    pytest.param("_︳import︳_('os') == 1", "names starting with _",
                 id="vertical-low-line-import"),
    pytest.param("𝓮𝓿𝓪𝓵('1') == 1", "", id="math-script-eval"),
    pytest.param("name._︳class︳_ == 1", "are not allowed: '__class__'",
                 id="vertical-low-line-dunder"),
    pytest.param("name.__ｃｌａｓｓ__ == 1", "attributes starting with _", id="mixed-dunder"),
    pytest.param("ᵍᵉᵗᵃᵗᵗʳ(name, 'x') == 1", "", id="superscript-getattr"),
    pytest.param("еval('1') == 1", "", id="cyrillic-e-eval"),
    pytest.param("𝚗𝚊𝚖𝚎.𝚏𝚘𝚛𝚖𝚊𝚝(1) == ''", "has no attribute 'format'", id="monospace-format"),
    # --- huge numbers ----------------------------------------------------------------------
    pytest.param("10**10**10 > 1", "exponents must be literal numbers", id="pow-tower"),
    pytest.param("9**9**9 > 1", "exponents must be literal numbers", id="pow-tower-9"),
    pytest.param("2**1000000 > 1", "exponents must be literal numbers up to 8", id="pow-big"),
    pytest.param("(10**8)**8 > 1", "nested powers", id="pow-nested"),
    pytest.param("memory ** sessions > 1", "exponents must be literal", id="pow-field"),
    pytest.param("1 << 10**9 > 1", "", id="lshift"),
    pytest.param("~memory == 1", "", id="invert"),
    pytest.param("memory @ memory == 1", "", id="matmul"),
    pytest.param("7" * 5000 + " > 1", "longer than 2000", id="literal-5000-digits"),
    pytest.param("9" * 1500 + " > 1", "numbers are limited", id="literal-1500-digits"),
    pytest.param("(-1) ** 0.5 > 0", "whole (a fractional power", id="complex-from-power"),
    pytest.param("(sessions - 1) ** 0.5 > 0", "whole (a fractional power",
                 id="complex-from-field-power"),
    pytest.param("1e999999 > cpu_pct and 10000000000000000000 > 1", "numbers are limited",
                 id="int-over-max"),
    # --- huge repetition and string methods with big arguments ----------------------------
    pytest.param("name * 1000000000 == ''", "repetition", id="str-repeat"),
    pytest.param("(1,) * 1000000000 == ()", "repetition", id="tuple-repeat"),
    pytest.param('"a" * 10**6 == name', "repetition", id="literal-repeat"),
    pytest.param("10**9 * name == ''", "", id="str-repeat-left"),
    pytest.param("name.ljust(10**9) == ''", "has no attribute 'ljust'", id="ljust"),
    pytest.param("name.center(10**9) == ''", "has no attribute 'center'", id="center"),
    pytest.param("name.zfill(10**9) == ''", "has no attribute 'zfill'", id="zfill"),
    pytest.param("name.replace('', name) == ''", "has no attribute 'replace'", id="replace"),
    pytest.param("name.join(name) == ''", "has no attribute 'join'", id="join"),
    pytest.param("'\\t'.expandtabs(10**9) == ''", "has no attribute 'expandtabs'",
                 id="expandtabs"),
    pytest.param("name.encode() == ''", "has no attribute 'encode'", id="encode"),
    pytest.param("name.split() == ()", "has no attribute 'split'", id="split"),
    pytest.param("name.strip(name).lower().upper().ljust(9) == ''", "ljust", id="chain-ljust"),
    # --- deep nesting and length ---------------------------------------------------------
    pytest.param("-" * 3000 + "1 > 0", "longer than 2000", id="unary-3000"),
    pytest.param("-" * 1500 + "1 > 0", "", id="unary-1500"),
    pytest.param("(" * 500 + "1" + ")" * 500 + " > 0", "", id="parens-500"),
    pytest.param("not " * 2000 + "idle", "longer than 2000", id="not-2000"),
    pytest.param("not " * 400 + "idle", "nests deeper than 30", id="not-400"),
    pytest.param("[" * 100 + "]" * 100 + " == ()", "", id="lists-100"),
    pytest.param(LONG_SUM, "longer than 2000", id="long-sum"),
    pytest.param(" or ".join(["idle"] * 240), "more than 400 parts", id="many-nodes"),
    pytest.param("idle and " + "'x' " * 700 + "== ''", "", id="implicit-concat"),
    pytest.param("name == '" + "x" * 1200 + "'", "strings are limited", id="long-string"),
    pytest.param("(" + "1, " * 150 + ") == ()", "tuples are limited", id="long-tuple"),
    # --- not an expression, or kinds of value that do not exist --------------------------
    pytest.param("idle\x00", "", id="nul"),
    pytest.param("idle and name == 'a\x00'", "", id="nul-in-string"),
    pytest.param("import os", "syntax error", id="import-statement"),
    pytest.param("x = 1", "syntax error", id="assignment"),
    pytest.param("idle; idle", "syntax error", id="semicolon"),
    pytest.param("idle\nimport os", "syntax error", id="second-line-statement"),
    pytest.param("del name", "syntax error", id="del"),
    pytest.param("yield 1", "", id="yield"),
    pytest.param("await idle", "", id="await"),
    pytest.param("{1: 2} == 1", "a dict is not allowed", id="dict"),
    pytest.param("{1, 2} == 1", "a set is not allowed", id="set"),
    pytest.param("(1, 2)[0] == 1", "only strings can be indexed", id="tuple-subscript"),
    pytest.param("name.upper[0] == ''", "is a method", id="method-subscript"),
    pytest.param("now[0] == 1", "only strings can be indexed", id="datetime-subscript"),
    pytest.param("name[1:2, 3] == ''", "", id="tuple-index"),
    pytest.param("b'x' == name", "bytes constants are not allowed", id="bytes"),
    pytest.param("... == name", "ellipsis constants", id="ellipsis-literal"),
    pytest.param("Ellipsis == name", "unknown name 'Ellipsis'", id="ellipsis-name"),
    pytest.param("1j == cpu_pct", "complex constants", id="complex"),
    pytest.param("type(...) == 1", "", id="type-ellipsis"),
    pytest.param("name is name", "'is' only tests for None", id="is-identity"),
    pytest.param("name", "must be true or false", id="not-a-bool"),
    # --- regular expressions and glob patterns --------------------------------------------
    pytest.param('re_match("(a+)+$", name)', "nested repetition", id="re-nested"),
    pytest.param('re_match("(a|aa)*$", name)', "alternation inside a repetition",
                 id="re-alternation"),
    pytest.param('re_match("(a*)*b", name)', "nested repetition", id="re-star-star"),
    pytest.param('re_match("(.*a){20}", name)', "nested repetition", id="re-counted"),
    pytest.param('re_match("a*a*a*a*a*a*$", name)', "at most 2 repetitions", id="re-poly"),
    pytest.param('re_match(".*.*.*.*.*.*.*.*X", name)', "at most 2", id="re-dotstar"),
    pytest.param('re_match(r"(a)\\1", name)', "backreferences", id="re-backref"),
    pytest.param('re_match(r"(?P<x>a)(?P=x)", name)', "backreferences", id="re-named-backref"),
    pytest.param('re_match("(?=a)a", name)', "lookahead", id="re-lookahead"),
    pytest.param('re_match("(?<!a)b", name)', "lookbehind", id="re-lookbehind"),
    pytest.param('re_match("(a)?(?(1)a|b)", name)', "conditional groups", id="re-conditional"),
    pytest.param('re_match("[", name)', "bad regular expression", id="re-invalid"),
    pytest.param('re_match("a" + "b", name)', "must be a literal string", id="re-computed"),
    pytest.param(f're_match("{"a" * 201}", name)', "limited to 200", id="re-long"),
    pytest.param("re_match(name, 'x')", "must be a literal string", id="re-field-pattern"),
    pytest.param("glob(name, name)", "must be a literal string", id="glob-field-pattern"),
    pytest.param("glob(name, 'x' + 'y')", "must be a literal string", id="glob-concat"),
    pytest.param("glob(name, owner)", "literal string", id="glob-owner"),
    # --- calls: results, splats, keywords -------------------------------------------------
    pytest.param("hours(1)() > idle_for", "cannot be called", id="call-result"),
    pytest.param("name.upper()() == ''", "cannot be called", id="call-method-result"),
    pytest.param("datetime.timedelta(hours=1)() > idle_for", "cannot be called",
                 id="call-constructed"),
    pytest.param("hours(**{'n': 1}) > idle_for", "", id="kwargs-splat"),
    pytest.param("datetime.timedelta(**{}) > idle_for", "**arguments", id="kwargs-empty"),
    pytest.param("datetime.timedelta(microseconds=1) > idle_for", "does not take keyword",
                 id="kwarg-unknown"),
    pytest.param("hours(4, n=4) > idle_for", "does not take keyword 'n'", id="kwarg-function"),
    pytest.param("max(*(1, 2)) > 1", "*arguments are not allowed", id="star-args"),
    pytest.param("(*name,) == ()", "*unpacking is not allowed", id="star-tuple"),
    pytest.param("name.startswith('a', 0, 10**9)", "takes", id="too-many-args"),
    pytest.param("user_attr('X', t={}) == ''", "does not take keyword 't'",
                 id="user-attr-default"),
    pytest.param("datetime.datetime(2026, 1, 1, tzinfo=None) < now", "does not take keyword",
                 id="datetime-tzinfo"),
]  # fmt: skip


@pytest.mark.parametrize("expression, message", ESCAPES)
def test_escape_attempts_are_refused_at_compile_time(expression, message):
    with pytest.raises(RuleError) as error:
        compile_rule(expression, NOW)
    assert isinstance(error.value.message, str) and error.value.message
    assert message in error.value.message


def test_the_corpus_is_big_and_has_no_duplicates():
    expressions = [case.values[0] for case in ESCAPES]
    assert len(expressions) >= 60
    assert len(set(expressions)) == len(expressions)


def test_lookalike_identifiers_are_reported_under_their_normalised_name():
    with pytest.raises(RuleError) as error:
        compile_rule("ｅｖａｌ('1') == 1", NOW)
    assert error.value.message == "eval cannot be called"
    with pytest.raises(RuleError) as error:
        compile_rule("_︳import︳_ == 1", NOW)
    assert error.value.message.endswith("'__import__'")


def test_errors_carry_a_position():
    with pytest.raises(RuleError) as error:
        compile_rule("idle and name.__class__ == 1", NOW)
    assert (error.value.line, error.value.column) == (1, 10)


def test_errors_point_inside_the_rule_even_for_a_bare_generator():
    with pytest.raises(RuleError) as error:
        compile_rule("x for x in name", NOW)
    assert error.value.line == 1


# --- what valid rules can reach -----------------------------------------------------------

VALID = [
    "idle and idle_for > hours(4)",
    "now.hour >= 20 or now.weekday() >= 5",
    'name.startswith(("test-", "tmp-"))',
    're_match(r"^ci-[0-9]+$", name)',
    "datetime.timedelta(hours=4) < idle_for",
    'owner in ("alice", "bob")',
    'glob(name, "ci-*") and not exempt',
    "max(net_rx_bps, net_tx_bps) < 1000 and cpu_pct < 2",
    "started < now - days(7) and uptime > weeks(1)",
    "now < datetime.datetime(2027, 1, 1) and now.date() > datetime.date(2026, 1, 1)",
    'user_attr("PROJECT") == "ci"',
    "gpu_pct is None or gpu_pct < 5",
    "gpu_pct < 5",
    "time.time() > 0 and now.timestamp() > 0",
    "len(name[::-1]) == 5 and name[0] == 'c' and name.upper().lower().strip() == name",
    "int('12') == id and float(memory) / 1024 >= 4 and round(cpu_pct, 1) < 1",
    "abs(idle_for - hours(5)) < minutes(1) and idle_for.total_seconds() > 3600",
    "any((sessions > 0, busy_procs > 0)) or all((idle, not stale))",
    "(cpu_pct if idle else 100.0) < 2 and -memory < +memory",
    "2 ** 8 == 256 and 10 ** -2 < 1 and 7 // 2 == 3 and 7 % 2 == 1",
    "ｉｄｌｅ and ｈｏｕｒｓ(4) < idle_for",  # fullwidth letters normalise to valid names
]

ALLOWED_NAMES = set(FIELDS) | {"now"} | set(MODULES) | set(FUNCTIONS) | set(HELPERS)
ALLOWED_ATTRIBUTES = {attr for members in ATTRIBUTES.values() for attr in members}


@pytest.mark.parametrize("expression", VALID)
def test_valid_expressions_compile_and_evaluate_to_a_truth_value(expression):
    rule = compile_rule(expression, NOW)
    assert rule.globals["__builtins__"] == {}
    assert rule.fields <= set(FIELDS) | {"user_attr"}
    result = rule.evaluate({name: SAMPLE[name] for name in rule.fields})
    assert result is None or isinstance(result, bool)


@pytest.mark.parametrize("expression", VALID)
def test_compiled_code_only_names_allowed_things(expression):
    """Defence in depth: the code object itself loads nothing beyond the allow-lists."""
    rule = compile_rule(expression, NOW)
    folded = {name for name in rule.globals if name.startswith("_k")}
    for code in (rule.code, rule.exact):
        for name in _all_names(code):
            temporary = re.fullmatch(r"_t[0-9]+", name) is not None  # the compiler's own `:=`
            assert temporary or name in ALLOWED_NAMES | ALLOWED_ATTRIBUTES | folded, name
            assert not name.startswith("__"), name


def _all_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _all_names(const)
    return names


def test_the_sample_expressions_match_the_sample_vm():
    assert compile_rule(VALID[0], NOW).matches(SAMPLE)
    assert compile_rule("gpu_pct < 5", NOW).evaluate(SAMPLE) is None  # unknown, not False
    assert not compile_rule("not (gpu_pct < 5)", NOW).matches(SAMPLE)


def test_evaluation_globals_hold_no_builtins_and_only_reduced_modules():
    rule = compile_rule(VALID[0], NOW)
    assert rule.globals["__builtins__"] == {}
    for name in ("open", "eval", "getattr", "__import__", "type", "object"):
        with pytest.raises(NameError):
            eval(compile(name, "<probe>", "eval"), rule.globals, {})
    assert set(vars(BASE_GLOBALS["datetime"])) == set(ATTRIBUTES["module datetime"])
    assert set(vars(BASE_GLOBALS["time"])) == set(ATTRIBUTES["module time"])


def test_valid_expressions_only_contain_allowed_names_and_attributes():
    for expression in VALID:
        for node in ast.walk(ast.parse(expression, mode="eval")):
            if isinstance(node, ast.Name):
                assert node.id in ALLOWED_NAMES
            if isinstance(node, ast.Attribute):
                assert node.attr in ALLOWED_ATTRIBUTES | set(ATTRIBUTES["module datetime"])


# --- allowed, but must stay cheap on the worst data a VM can bring ------------------------

WORST = {
    **SAMPLE,
    "name": "a" * 5000 + "!",
    "owner": "\t" * 5000,
    "memory": 10**18,
    "sessions": -(10**18),
    "cpu_pct": 1e308,
    "user_attr": lambda key: "a" * 100_000,
}

BOUNDED = [
    're_match("[ab]*[ab]*$", name)',
    're_match(".*.*X", name)',
    're_match("(?:a|b)c*$", name)',
    "glob(name, '" + "*a" * 60 + "*c')",
    "glob(name, '[!b]*[!b]*[!b]*[!b]*[!b]*c')",
    "'a!' in name + name + name",
    're_match("a*b", user_attr("X"))',
    "memory ** 8 * memory ** 8 > 1",
    'int(user_attr("A")) ** 8 > 0',
    "round(memory, sessions) == 0",
    "round(cpu_pct, sessions) == 0",
    "round(cpu_pct, memory) == 0",
    "hours(cpu_pct) > idle_for",
    "cpu_pct ** 8 > 1",
    "now + days(memory) > now",
    "datetime.timedelta(days=memory) > idle_for",
    "float(name) > 1",
    "int(name) > 1",
    "name[memory] == ''",
    "len(owner.strip(name)) > 0",
]


@pytest.mark.parametrize("expression", BOUNDED)
def test_allowed_but_expensive_looking_expressions_stay_cheap(expression):
    rule = compile_rule(expression, NOW)
    started = time.perf_counter()
    with contextlib.suppress(ArithmeticError, ValueError, TypeError, IndexError):
        rule.evaluate({name: WORST[name] for name in rule.fields})
    assert time.perf_counter() - started < 0.5


def test_folding_values_are_real_objects_of_the_allowed_kinds():
    rule = compile_rule(
        "idle_for > hours(1) and now > datetime.datetime(2020, 1, 1) "
        "and now.date() > datetime.date(2020, 1, 1)",
        NOW,
    )
    folded = [v for k, v in rule.globals.items() if k.startswith("_k")]
    assert {type(v) for v in folded} <= {timedelta, datetime, date}
