"""The evaluate step: which rule would act on which VM this cycle, after every safety rail.

`evaluate_rules` compiles the enabled rules (an invalid one is skipped and reported, the
others run), evaluates each against the VMs in its scope (`evaluate_rule`, one rule at a
time), and applies the rails in this order:

1. the action must apply to the VM's state (suspend only a RUNNING VM, ...);
2. exempt VMs (IDLEVM_EXEMPT="YES") are never acted on;
3. a VM acted on by this rule within its cooldown is left alone;
4. one action per VM per cycle: the first rule (by order) claims it;
5. a rule matching more VMs than its max_actions_per_cycle takes no action at all;
6. if the real, destructive actions of all rules exceed the global limit (a count and a
   percentage of running VMs), none is taken this cycle.

Nothing here talks to OpenNebula or writes history: the act step does (act.py).
"""

from __future__ import annotations

import fnmatch
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from idlevm.inventory.collect import ACTIVE, RUNNING
from idlevm.inventory.conditions import Condition, Kind
from idlevm.inventory.models import VirtualMachine
from idlevm.rules.actions import ACTIONS, Action
from idlevm.rules.checker import RuleError
from idlevm.rules.compiler import CompiledRule, compile_rule
from idlevm.rules.fields import FIELDS, Context, is_exempt
from idlevm.rules.models import ActionRecord, Rule
from idlevm.rules.validation import rule_problems

log = logging.getLogger("idlevm.rules")
Values = dict[str, object]
# Outcomes that start a rule's cooldown on a VM: anything that was (or may have been) sent,
# and, in dry run, what would have been. A skipped action did nothing: no cooldown.
REAL_OUTCOMES = [
    ActionRecord.Outcome.PENDING, ActionRecord.Outcome.DONE, ActionRecord.Outcome.FAILED,
    ActionRecord.Outcome.INTERRUPTED,
]  # fmt: skip
COOLING_OUTCOMES = [*REAL_OUTCOMES, ActionRecord.Outcome.WOULD]


@dataclass(frozen=True, slots=True)
class Limits:
    max_actions: int  # real destructive actions per cycle, all rules together
    max_percent: float  # ... and at most this share of the running VMs (rounded up)
    dry_run: bool = False  # global dry run: nothing is sent whatever the rules say

    def allowed(self, running: int) -> int:
        return min(self.max_actions, math.ceil(running * self.max_percent / 100))


@dataclass
class Planned:
    """An action the act step should take (or record, in dry run)."""

    rule: Rule
    compiled: CompiledRule
    action: Action
    vm: VirtualMachine
    evidence: dict[str, object]
    dry_run: bool


@dataclass
class RuleResult:
    rule: Rule
    matched: int = 0  # expression true, VM in scope
    wrong_state: int = 0  # matched, but the action does not apply in the VM's state
    exempt: int = 0
    cooling: int = 0
    claimed: int = 0  # already taken by an earlier rule this cycle
    failed: int = 0  # evaluation raised for this many VMs
    error: str = ""  # the first evaluation failure
    blocked: str = ""  # why this rule takes no action this cycle
    planned: list[Planned] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "matched": self.matched, "wrong_state": self.wrong_state, "exempt": self.exempt,
            "cooling": self.cooling, "claimed": self.claimed, "failed": self.failed,
            "planned": len(self.planned), "error": self.error, "blocked": self.blocked,
        }  # fmt: skip


@dataclass
class Evaluation:
    results: list[RuleResult] = field(default_factory=list)
    planned: list[Planned] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_rules(
    rules: Iterable[Rule], vms: list[VirtualMachine], ctx: Context, limits: Limits
) -> Evaluation:
    started = time.monotonic()
    out = Evaluation()
    compiled: list[tuple[Rule, CompiledRule]] = []
    for rule in rules:
        try:
            compiled.append((rule, compile_valid(rule, ctx.now)))
        except RuleError as exc:
            message = f"rule {rule.name!r} is invalid and was skipped: {exc}"
            out.conditions.append(Condition(Kind.RULE_INVALID, f"rule:{rule.pk}", message))
            out.results.append(RuleResult(rule, blocked=f"invalid: {exc}"))
    names = set().union(*(c.fields for _, c in compiled))
    table = [(vm, values_for(vm, names, ctx)) for vm in vms]
    claimed: set[int] = set()
    for rule, rule_code in compiled:
        try:
            cooling = cooling_vms(rule, ctx.now, dry_run=rule.dry_run or limits.dry_run)
            result = evaluate_rule(rule, rule_code, table, claimed, cooling)
        except Exception as exc:  # one rule's failure must not stop the others
            log.exception("rule %s failed", rule.name)
            message = f"rule {rule.name!r} failed and was skipped: {type(exc).__name__}: {exc}"
            out.conditions.append(Condition(Kind.RULE_FAILED, f"rule:{rule.pk}", message))
            out.results.append(RuleResult(rule, error=message, blocked="failed"))
            continue
        out.results.append(result)
        out.conditions += rule_conditions(result)
        claimed.update(planned.vm.id for planned in result.planned)
    out.planned = [p for r in out.results for p in r.planned]
    # The global limit counts what the rules would really do, so that a global dry run
    # shows the limit stopping them too; then the global dry run applies.
    apply_global_limit(out, limits, running=sum(1 for vm in vms if is_running(vm)))
    for planned in out.planned:
        planned.dry_run = planned.dry_run or limits.dry_run
    out.seconds = time.monotonic() - started
    return out


def compile_valid(rule: Rule, now: datetime) -> CompiledRule:
    """The rule compiled for this cycle, after the same validation as when it was saved."""
    problems = rule_problems(rule)
    if problems:
        raise RuleError("; ".join(f"{f}: {' '.join(m)}" for f, m in problems.items()))
    return compile_rule(rule.expression, now)


def values_for(vm: VirtualMachine, names: set[str], ctx: Context) -> Values:
    values: Values = {}
    for name in names:
        if name == "user_attr":
            template = vm.user_template if isinstance(vm.user_template, dict) else {}
            values[name] = lambda key, t=template: _text(t.get(key))
        else:
            values[name] = FIELDS[name].get(vm, ctx)
    return values


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Scope:
    """Whether a VM is one the rule applies to (precomputed sets)."""

    def __init__(self, rule: Rule) -> None:
        self.all = rule.all_vms
        self.ids = set(rule.vms or [])
        self.owners = set(rule.owners or [])
        self.groups = set(rule.groups or [])
        self.pattern = rule.name_pattern

    def __call__(self, vm: VirtualMachine) -> bool:
        return (
            self.all or vm.id in self.ids or vm.owner in self.owners or vm.group in self.groups
            or bool(self.pattern and fnmatch.fnmatchcase(vm.name, self.pattern))
        )  # fmt: skip


def evaluate_rule(
    rule: Rule,
    compiled: CompiledRule,
    table: list[tuple[VirtualMachine, Values]],
    claimed: set[int],
    cooling: set[int],
) -> RuleResult:
    """One rule against the VMs: what it matched and what it may act on."""
    result = RuleResult(rule)
    action = ACTIONS[rule.action]
    scope = Scope(rule)
    first_error = ""
    candidates: list[tuple[VirtualMachine, Values]] = []
    code, globals_ = compiled.code, compiled.globals  # the hot loop: no method calls
    for vm, values in table:
        if not scope(vm):
            continue
        try:
            if eval(code, globals_, values) is not True:  # the verdict (CompiledRule.matches)
                continue
        except Exception as exc:  # a rule that fails on a VM does not match it
            result.failed += 1
            first_error = first_error or f"VM {vm.id}: {type(exc).__name__}: {exc}"
            continue
        result.matched += 1
        if not action.applies(vm.state_name, vm.lcm_state_name):
            result.wrong_state += 1
        elif is_exempt(vm):
            result.exempt += 1
        elif vm.id in cooling:
            result.cooling += 1
        elif vm.id in claimed:
            result.claimed += 1
        else:
            candidates.append((vm, values))
    result.error = first_error
    if len(candidates) > rule.max_actions_per_cycle:
        result.blocked = (
            f"matched {len(candidates)} VMs to act on, more than its limit of "
            f"{rule.max_actions_per_cycle} (max_actions_per_cycle): no action taken"
        )
        return result
    result.planned = [
        Planned(rule, compiled, action, vm, evidence(values, compiled), rule.dry_run)
        for vm, values in candidates
    ]
    return result


def cooling_vms(rule: Rule, now: datetime, dry_run: bool) -> set[int]:
    """VMs this rule acted on within its cooldown. Would-be actions count only in dry run:
    previewing a live rule must not hold back its real actions later."""
    if not rule.cooldown:
        return set()
    outcomes = COOLING_OUTCOMES if dry_run else REAL_OUTCOMES
    return set(
        ActionRecord.objects.filter(
            rule=rule, time__gte=now - rule.cooldown, outcome__in=outcomes
        ).values_list("vm_id", flat=True)
    )


def rule_conditions(result: RuleResult) -> list[Condition]:
    subject = f"rule:{result.rule.pk}"
    name = result.rule.name
    found = []
    if result.failed:
        message = f"rule {name!r}: evaluation failed for {result.failed} VM(s) (no match for "
        message += f"those), first: {result.error}"
        found.append(Condition(Kind.RULE_FAILED, subject, message))
    if not result.planned and result.blocked.startswith("matched"):
        found.append(Condition(Kind.RULE_LIMIT, subject, f"rule {name!r} {result.blocked}"))
    return found


def apply_global_limit(out: Evaluation, limits: Limits, running: int) -> None:
    real = [p for p in out.planned if not p.dry_run and p.action.destructive]  # by the rules
    allowed = limits.allowed(running)
    if len(real) <= allowed:
        return
    message = (
        f"{'(dry run) ' if limits.dry_run else ''}"
        f"the rules would take {len(real)} actions this cycle, more than the global limit of "
        f"{allowed} (MAX_ACTIONS_PER_CYCLE={limits.max_actions}, MAX_ACTIONS_PERCENT="
        f"{limits.max_percent:g}% of {running} running VMs): no action taken"
    )
    out.conditions.append(Condition(Kind.ACTIONS_LIMIT, "service", message))
    stopped = {id(p) for p in real}
    out.planned = [p for p in out.planned if id(p) not in stopped]
    for result in out.results:
        if any(id(p) in stopped for p in result.planned):
            result.blocked = "global limit: " + message
            result.planned = [p for p in result.planned if id(p) not in stopped]


def is_running(vm: VirtualMachine) -> bool:
    return (vm.state, vm.lcm_state) == (ACTIVE, RUNNING)  # as collection counts them


def evidence(values: Values, compiled: CompiledRule) -> dict[str, object]:
    """The values the rule read, as JSON: why it matched, for the history."""
    return {name: _json(values[name]) for name in sorted(compiled.fields) if name != "user_attr"}


def _json(value: object) -> object:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():.0f}s"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
