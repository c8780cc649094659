"""Rules benchmark: the cost of evaluating rule expressions, against plain eval and simpleeval.

20 realistic rules against 10,000 VMs built in memory (never saved), measured side by side:
- ours:        `CompiledRule.matches(values)` (the verdict), and the raw
               `eval(rule.code, rule.globals, values)` it wraps (what engine.py runs);
- plain eval:  `compile(expression)` evaluated with the same functions and modules, no
               builtins and no rewriting: the reference for code that runs Python bytecode;
- simpleeval:  `EvalWithCompoundTypes`, each expression parsed once, `eval(expr, parsed)`.

Every VM's values are computed once (`values_for`, outside the timed part), so all engines
read the same dicts. Plain eval and simpleeval raise TypeError on None (missing idle data),
which the rule language turns into "unknown" on purpose: the engines are compared on the
(rule, VM) pairs whose values for that rule are all present, and our engine is also timed on
every pair. A correctness guard checks that the three agree on each of the compared pairs.
Then the whole `evaluate_rules` step (values, evaluation, rails) runs on a temporary SQLite
database (the cooldown rail reads ActionRecord). Usage: python bench/rules.py [--show-code]
"""

from __future__ import annotations

import argparse
import ast
import atexit
import gc
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VMS = 10_000
SEED = 42
REPEATS = 5  # best of, for the compiled engines
SIMPLEEVAL_REPEATS = 3  # simpleeval is several times slower: fewer repeats, a shorter run
TARGET_VS_EVAL = 1.5  # ours at most this times plain compiled eval
TARGET_VS_SIMPLEEVAL = 20.0  # ours at least this many times faster than simpleeval

# Realistic rules: what operators write (see docs/rules.md), one action each.
RULES: list[tuple[str, str]] = [
    ("suspend", "idle and idle_for > hours(4)"),
    ("suspend", "idle_for > hours(2) and (now.hour >= 20 or now.hour < 7 or now.weekday() >= 5)"),
    ("poweroff", 'name.startswith(("test-", "tmp-", "ci-")) and idle_for > hours(1)'),
    ("suspend", 're_match(r"(dev|sandbox)-[a-z]+-[0-9]+$", name) and cpu_pct < 2 '
                "and data_age < minutes(10)"),
    ("suspend", 'glob(name, "jupyter-*") and sessions == 0 and idle_for > hours(3)'),
    ("suspend", 'owner in ("alice", "bob", "carol") and idle and uptime > days(7)'),
    ("undeploy", 'group in ("students", "teaching") and not exempt and idle_for > hours(12)'),
    ("log", "cpu_pct < 1.5 and load < 0.1 and max(net_rx_bps, net_tx_bps) < 2000"),
    ("suspend", "uptime > days(30) and idle_since < now - days(3)"),
    ("poweroff", "idle_for > datetime.timedelta(hours=6, minutes=30) and disk_bps < 10000"),
    ("suspend", "min(cpu_pct, load * 100) < 2 and busy_procs == 0 and sessions == 0"),
    ("log", 'stale and uptime > days(2) and data_age > hours(24) and state == "ACTIVE"'),
    ("log", 'state == "POWEROFF" and uptime > days(14)'),
    ("suspend", "gpu_pct is not None and gpu_pct < 5 and idle_for > hours(1)"),
    ("log", "sessions > 0 and input_age > hours(8) and cpu_pct < 5"),
    ("suspend", "memory >= 16384 and vcpu >= 8 and idle_for > hours(2) and now.weekday() < 5"),
    ("poweroff", 'host.startswith("gpu") and gpu_pct < 1 and idle'),
    ("suspend", 'not exempt and lcm_state == "RUNNING" and (idle_for > hours(8) or '
                "(cpu_pct < 0.5 and net_rx_bps + net_tx_bps < 500))"),
    ("suspend", '(now.hour >= 22 or now.hour < 6) and owner not in ("ops", "monitoring") '
                "and cpu_pct < 3 and steal_pct < 20"),
    ("log", "idle_for / hours(1) > 24 and data_age < minutes(10) and started < now - days(7)"),
]  # fmt: skip


def setup_django() -> None:
    directory = tempfile.mkdtemp(prefix="idlevm-rules-bench-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/rules-bench.sqlite3"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suspend_service.settings")
    import django

    django.setup()


# --- the VMs --------------------------------------------------------------------------------

OWNERS = [("alice", "physics"), ("bob", "physics"), ("carol", "chemistry"),
          ("dave", "students"), ("erin", "students"), ("frank", "teaching"),
          ("grace", "bioinfo"), ("heidi", "bioinfo"), ("ops", "admins"),
          ("monitoring", "admins"), ("ivan", "students"), ("judy", "ml")]  # fmt: skip
PREFIXES = ["test-", "tmp-", "ci-", "dev-", "sandbox-", "jupyter-", "web-", "db-", "build-",
            "train-", "prod-", "node-"]  # fmt: skip
# (state, lcm_state, weight): mostly running, as in a production pool.
STATES = [("ACTIVE", "RUNNING", 80), ("POWEROFF", "LCM_INIT", 8), ("SUSPENDED", "LCM_INIT", 4),
          ("STOPPED", "LCM_INIT", 1), ("UNDEPLOYED", "LCM_INIT", 2), ("PENDING", "LCM_INIT", 2),
          ("HOLD", "LCM_INIT", 1), ("ACTIVE", "BOOT", 1), ("ACTIVE", "UNKNOWN", 1)]  # fmt: skip


def build_vms(n: int, now: datetime) -> list[Any]:
    """n VMs in memory: idle and busy, missing or stale idle data, a few exempt, GPUs."""
    from idlevm.inventory.models import VirtualMachine
    from idlevm.one.states import LCM_BY_NAME, VM_BY_NAME

    rnd = random.Random(SEED)
    states = [(s, lcm) for s, lcm, w in STATES for _ in range(w)]
    vms = []
    for i in range(n):
        owner, group = OWNERS[rnd.randrange(len(OWNERS))]
        state, lcm = rnd.choice(states)
        running = state == "ACTIVE"
        gpu = rnd.random() < 0.1
        host_id = rnd.randrange(500) if running or state in ("POWEROFF", "SUSPENDED") else None
        host = "" if host_id is None else f"{'gpu' if gpu else 'node'}{host_id:03d}"
        prefix = rnd.choice(PREFIXES)
        name = f"{prefix}{rnd.choice(['alpha', 'beta', 'x', 'lab'])}-{i}"
        vm = VirtualMachine(
            id=i, name=name, uid=10 + OWNERS.index((owner, group)), owner=owner,
            gid=100 + len(group), group=group, state=VM_BY_NAME[state], state_name=state,
            lcm_state=LCM_BY_NAME[lcm], lcm_state_name=lcm, host_id=host_id, host_name=host,
            stime=None if state == "PENDING" else now - timedelta(hours=rnd.uniform(0.2, 2000)),
            cpu=rnd.choice([0.5, 1.0, 2.0, 4.0]), vcpu=rnd.choice([1, 2, 4, 8, 16]),
            memory=rnd.choice([1024, 2048, 4096, 8192, 16384, 32768]),
            user_template={"IDLEVM_EXEMPT": "YES"} if rnd.random() < 0.03 else {"PROJECT": "x"},
            first_seen=now - timedelta(days=30), last_seen=now,
        )  # fmt: skip
        if running and lcm == "RUNNING":
            add_idle_data(vm, rnd, now, gpu)
        vms.append(vm)
    return vms


def add_idle_data(vm: Any, rnd: random.Random, now: datetime, gpu: bool) -> None:
    """The agent's last record: none for 8% of running VMs, stale (> 15 min) for 7%."""
    draw = rnd.random()
    if draw < 0.08:
        return  # no agent
    age = timedelta(seconds=rnd.uniform(3600, 3 * 86400) if draw < 0.15 else rnd.uniform(5, 600))
    idle = rnd.random() < 0.45
    vm.idle_received = now - age
    vm.idle_seq, vm.idle_time, vm.idle_source = rnd.randrange(10**6), 0, "mon"
    vm.idle = idle
    vm.idle_since = now - timedelta(hours=rnd.uniform(0.1, 96)) if idle else None
    vm.cpu_pct = rnd.uniform(0, 2) if idle else rnd.uniform(1, 100)
    vm.steal_pct = rnd.uniform(0, 30)
    vm.load = rnd.uniform(0, 0.2) if idle else rnd.uniform(0.1, 8)
    vm.disk_bps = rnd.uniform(0, 20_000) if idle else rnd.uniform(0, 5e7)
    vm.net_rx_bps = rnd.uniform(0, 3000) if idle else rnd.uniform(100, 1e7)
    vm.net_tx_bps = rnd.uniform(0, 2000) if idle else rnd.uniform(100, 1e7)
    vm.sessions = 0 if idle or rnd.random() < 0.6 else rnd.randrange(1, 4)
    vm.input_age = rnd.randrange(60, 86400) if vm.sessions else None
    vm.busy_procs = 0 if idle else rnd.randrange(0, 3)
    vm.gpu_pct = (rnd.uniform(0, 3) if idle else rnd.uniform(0, 100)) if gpu else None


# --- the engines ----------------------------------------------------------------------------


def plain_globals(now: datetime) -> dict[str, object]:
    """What BASE_GLOBALS holds minus the three-valued helpers: functions, modules, now."""
    from idlevm.rules.functions import FUNCTIONS, MODULES

    return {
        "__builtins__": {},
        **{name: fn.impl for name, fn in FUNCTIONS.items() if fn.impl is not None},
        **{name: module for name, (_, module) in MODULES.items()},
        "now": now,
    }


def simple_evaluator(now: datetime) -> Any:
    from simpleeval import EvalWithCompoundTypes

    functions = {k: v for k, v in plain_globals(now).items() if callable(v)}
    return EvalWithCompoundTypes(functions=functions, names={})


def rewritten_source(expression: str) -> str:
    """The Python our compiler runs for an expression (reconstructed with its _Rewriter)."""
    from idlevm.rules.checker import check
    from idlevm.rules.compiler import _Rewriter

    checked = check(expression)
    constants: dict[str, object] = {}
    tree = _Rewriter(checked, constants).visit(checked.tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def best_of(repeats: int, run: Callable[[], None]) -> float:
    """Best wall time of `run`, with the collector off while it runs (as timeit does).

    No gc.collect() before: a full collection empties the interpreter's free lists and made
    the next evaluations about 100 ns slower each on this machine.
    """
    best = float("inf")
    for _ in range(repeats):
        gc.disable()
        try:
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best


ENGINES = ("method", "raw", "plain", "simpleeval")


def rule_loop(engine: str, rule: Any, plain: tuple[Any, dict[str, object]],
              parsed: tuple[str, Any], simple: Any, dicts: list[dict[str, object]],
              merged: list[dict[str, object]]) -> Callable[[], None]:  # fmt: skip
    """One rule over its VMs' values with one engine; every loop has the same shape."""

    def method() -> None:
        matches = rule.matches
        for values in dicts:
            matches(values)

    def raw() -> None:
        code, globals_ = rule.code, rule.globals
        for values in dicts:
            eval(code, globals_, values)

    def plain_eval() -> None:
        code, globals_ = plain
        for values in dicts:
            eval(code, globals_, values)

    def simpleeval() -> None:
        source, node = parsed
        for names in merged:
            simple.names = names
            simple.eval(source, node)

    loops = {"method": method, "raw": raw, "plain": plain_eval, "simpleeval": simpleeval}
    return loops[engine]


# --- correctness ----------------------------------------------------------------------------


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def guard(compiled: list[Any], plain: list[Any], parsed: list[Any], simple: Any,
          full: list[list[tuple[int, dict[str, object]]]], extra: dict[str, object]
          ) -> list[str]:  # fmt: skip
    """Disagreements between the three engines on pairs with full data (should be none)."""
    problems = []
    for r, rule in enumerate(compiled):
        code, globals_ = plain[r]
        source, node = parsed[r]
        for vm_id, values in full[r]:
            ours = rule.evaluate(values)
            if rule.matches(values) != (ours is True):  # the verdict code against the exact one
                problems.append(f"rule {r + 1} VM {vm_id}: matches() disagrees with {ours!r}")
            theirs = eval(code, globals_, values)
            simple.names = {**values, **extra}
            other = simple.eval(source, node)
            if not (same(ours, theirs) and same(ours, other)):
                problems.append(
                    f"rule {r + 1} VM {vm_id}: ours={ours!r} eval={theirs!r} simpleeval={other!r}"
                )
    return problems


def missing_data_census(compiled: list[Any], plain: list[Any],
                        table: list[list[dict[str, object]]],
                        full_ids: list[set[int]]) -> dict[str, int]:  # fmt: skip
    """On pairs with missing data: what plain eval does where ours yields unknown/False."""
    census = {"pairs": 0, "eval_raises": 0, "same_verdict": 0, "eval_matches_ours_not": 0,
              "ours_matches_eval_not": 0}  # fmt: skip
    for r, rule in enumerate(compiled):
        code, globals_ = plain[r]
        for vm_id, values in enumerate(table[r]):
            if vm_id in full_ids[r]:
                continue
            census["pairs"] += 1
            ours = rule.evaluate(values) is True
            if rule.matches(values) != ours:
                census["verdict_disagrees"] = census.get("verdict_disagrees", 0) + 1
            try:
                theirs = eval(code, globals_, values) is True
            except TypeError:
                census["eval_raises"] += 1
                continue
            if ours == theirs:
                census["same_verdict"] += 1
            elif theirs:
                census["eval_matches_ours_not"] += 1
            else:
                census["ours_matches_eval_not"] += 1
    return census


# --- the whole evaluate step ----------------------------------------------------------------


def time_evaluate_rules(vms: list[Any], ctx: Any) -> tuple[float, int, int]:
    """evaluate_rules on the 20 rules (saved: the cooldown rail queries their history)."""
    from django.core.management import call_command

    from idlevm.rules.engine import Limits, evaluate_rules
    from idlevm.rules.models import Rule

    call_command("migrate", verbosity=0)
    rules = [
        Rule.objects.create(
            name=f"bench-{i + 1}", expression=expression, action=action, all_vms=True,
            dry_run=True, order=i,
        )
        for i, (action, expression) in enumerate(RULES)
    ]  # fmt: skip
    outcome: list[Any] = []

    def run() -> None:
        outcome[:] = [evaluate_rules(rules, vms, ctx, Limits(10**6, 100.0))]

    seconds = best_of(3, run)
    result = outcome[0]
    assert not any(r.blocked.startswith("invalid") for r in result.results), result.conditions
    return seconds, sum(r.matched for r in result.results), sum(r.failed for r in result.results)


# --- the driver -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-code", action="store_true", help="print the rewritten rules")
    args = parser.parse_args()
    setup_django()
    from importlib.metadata import version

    from django.conf import settings

    from idlevm.rules.compiler import compile_rule
    from idlevm.rules.engine import values_for
    from idlevm.rules.fields import Context
    from idlevm.rules.functions import MODULES, local_zone

    if args.show_code:
        for i, (_, expression) in enumerate(RULES, 1):
            print(f"{i:2}. {expression}\n    -> {rewritten_source(expression)}")
        return
    now = datetime(2026, 11, 25, 22, 30, tzinfo=local_zone())  # a Wednesday night
    ctx = Context(now=now, stale_after=timedelta(seconds=settings.IDLE_STALE_SECONDS))
    vms = build_vms(VMS, now)
    compiled = [compile_rule(expression, now) for _, expression in RULES]
    plain_g = plain_globals(now)
    plain = [(compile(expression, "<bench>", "eval"), plain_g) for _, expression in RULES]
    simple = simple_evaluator(now)
    parsed = [(expression, simple.parse(expression)) for _, expression in RULES]

    # Values once per VM for the union of fields, shared by every engine and rule.
    names = set().union(*(rule.fields for rule in compiled))
    values = [values_for(vm, names, ctx) for vm in vms]
    building = best_of(3, lambda: [values_for(vm, names, ctx) for vm in vms])
    extra = {"now": now, **{name: module for name, (_, module) in MODULES.items()}}
    full_ids = [
        {i for i, v in enumerate(values) if all(v[f] is not None for f in rule.fields)}
        for rule in compiled
    ]
    every = [values] * len(compiled)
    full = [[values[i] for i in sorted(ids)] for ids in full_ids]
    # simpleeval reads names from one mapping: the same values plus now and the modules,
    # merged here (not timed).
    merged = [{**v, **extra} for v in values]
    full_merged = [[merged[i] for i in sorted(ids)] for ids in full_ids]
    pairs_full = sum(len(d) for d in full)

    problems = guard(
        compiled, plain, parsed, simple,
        [[(i, values[i]) for i in sorted(ids)] for ids in full_ids], extra,
    )  # fmt: skip
    census = missing_data_census(compiled, plain, every, full_ids)

    # Best of N for each (engine, rule); an engine's figure is the sum over the rules.
    seconds: dict[str, list[float]] = {}
    for engine in ENGINES:
        repeats = SIMPLEEVAL_REPEATS if engine == "simpleeval" else REPEATS
        seconds[engine] = [
            best_of(repeats, rule_loop(engine, compiled[r], plain[r], parsed[r], simple,
                                       full[r], full_merged[r]))
            for r in range(len(compiled))
        ]  # fmt: skip
    seconds["method_all"] = [
        best_of(REPEATS, rule_loop("method", compiled[r], plain[r], parsed[r], simple,
                                   every[r], merged))
        for r in range(len(compiled))
    ]  # fmt: skip
    step, matched, failed = time_evaluate_rules(vms, ctx)

    print(f"{len(vms)} VMs, {len(compiled)} rules, {len(names)} fields; simpleeval "
          f"{version('simpleeval')}; pairs with full data: {pairs_full} of "
          f"{len(vms) * len(compiled)}")  # fmt: skip
    print(report(seconds, [len(d) for d in full], len(vms)))
    print(
        f"\nevaluate_rules, {len(compiled)} rules x {len(vms)} VMs (values + evaluation + "
        f"rails, SQLite): {step:.3f} s best of 3 ({step / len(vms) * 1e6:.0f} us a VM; "
        f"{matched} matches, {failed} failures); of which building the values ({len(names)} "
        f"fields): {building:.3f} s"
    )
    print(
        f"correctness guard on {pairs_full} full-data pairs: "
        f"{'all three agree' if not problems else f'{len(problems)} disagreements'}"
    )
    for problem in problems[:20]:
        print("  " + problem)
    print(
        f"pairs with missing data: {census['pairs']}; plain eval raised TypeError on "
        f"{census['eval_raises']}, gave the same verdict on {census['same_verdict']}, matched "
        f"where ours does not on {census['eval_matches_ours_not']}, and the reverse on "
        f"{census['ours_matches_eval_not']}; the verdict code (matches) disagreed with the exact "
        f"value (evaluate) on {census.get('verdict_disagrees', 0)}"
    )


def report(seconds: dict[str, list[float]], counts: list[int], vms: int) -> str:
    """The engines' table (all rules, and without the re_match ones), targets, per rule."""
    regex = [i for i, (_, expression) in enumerate(RULES) if "re_match(" in expression]
    others = [i for i in range(len(RULES)) if i not in regex]

    def ns(engine: str, rules: list[int]) -> float:
        return sum(seconds[engine][i] for i in rules) / sum(counts[i] for i in rules) * 1e9

    every = list(range(len(RULES)))
    labels = {
        "method": "idlevm `CompiledRule.matches(values)`",
        "raw": "idlevm raw `eval(rule.code, rule.globals, values)`",
        "plain": "plain compiled `eval` (no rewriting)",
        "simpleeval": "simpleeval `EvalWithCompoundTypes.eval(expr, parsed)`",
    }
    skip = ", ".join(str(i + 1) for i in regex)
    lines = [
        f"| engine | ns/eval, 20 rules | vs plain eval | simpleeval / this | ns/eval, without "
        f"rule {skip} (re_match) | vs plain eval | simpleeval / this |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine, label in labels.items():
        cells = []
        for rules in (every, others):
            value = ns(engine, rules)
            cells += [f"{value:.0f}", f"{value / ns('plain', rules):.2f}x",
                      f"{ns('simpleeval', rules) / value:.1f}x"]  # fmt: skip
        lines.append(f"| {label} | {' | '.join(cells)} |")
    mixed = sum(seconds["method_all"]) / (vms * len(RULES)) * 1e9
    mixed_others = sum(seconds["method_all"][i] for i in others) / (vms * len(others)) * 1e9
    lines.append(f"| idlevm `CompiledRule.matches`, all {vms * len(RULES)} pairs (missing data "
                 f"included) | {mixed:.0f} | - | - | {mixed_others:.0f} | - | - |")  # fmt: skip
    ours, plain, simple = ns("method", every), ns("plain", every), ns("simpleeval", every)
    lines += [
        "",
        f"Target: ours <= {TARGET_VS_EVAL}x plain compiled eval: "
        f"{'met' if ours <= TARGET_VS_EVAL * plain else 'NOT met'} ({ours / plain:.2f}x)",
        f"Target: ours >= {TARGET_VS_SIMPLEEVAL:.0f}x faster than simpleeval: "
        f"{'met' if simple / ours >= TARGET_VS_SIMPLEEVAL else 'NOT met'} ({simple / ours:.1f}x)",
        "",
        "| # | rule | full-data VMs | ours ns | plain eval ns | ours / plain | simpleeval ns "
        "| simpleeval / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, (_, expression) in enumerate(RULES):
        o, p, s = (seconds[e][i] / counts[i] * 1e9 for e in ("method", "plain", "simpleeval"))
        lines.append(f"| {i + 1} | `{expression}` | {counts[i]} | {o:.0f} | {p:.0f} | "
                     f"{o / p:.2f}x | {s:.0f} | {s / o:.1f}x |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
