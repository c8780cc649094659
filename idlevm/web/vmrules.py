"""The rules against VMs now, as the cycle evaluates them (idlevm.rules.engine).

- the list's "matched by rule" filter: a rule is Python, not SQL, so it is evaluated over
  the VMs the other filters leave, reading only the columns its fields need;
- a VM's page: for each enabled rule, its value for the VM and the values it read, and which
  of the cycle's rails (state, exemption, cooldown) would hold its action back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from idlevm.inventory.models import VirtualMachine
from idlevm.rules.actions import ACTIONS
from idlevm.rules.checker import RuleError
from idlevm.rules.engine import (
    COOLING_OUTCOMES,
    REAL_OUTCOMES,
    Scope,
    compile_valid,
    evidence,
    values_for,
)
from idlevm.rules.fields import Context, is_exempt
from idlevm.rules.models import ActionRecord, Rule
from idlevm.web.templatetags.console import duration

# --- the list's filter --------------------------------------------------------------------------

# The columns each rule field reads (fields.py getters); tests check that evaluating every
# field on a VM loaded with these columns only takes no query.
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "host": ("host_name",), "state": ("state_name",), "lcm_state": ("lcm_state_name",),
    "started": ("stime",), "uptime": ("stime",), "exempt": ("user_template",),
    "user_attr": ("user_template",), "idle_for": ("idle", "idle_since"), "stale": (),
    "data_age": (),
}  # fmt: skip
# The scope (id, name, owner, group) and freshness (idle_received) are always read.
ALWAYS = ("id", "name", "owner", "group", "idle_received")


def rule_columns(names: Iterable[str]) -> list[str]:
    columns = set(ALWAYS)
    for name in names:
        columns.update(FIELD_COLUMNS.get(name, (name,)))  # most fields are their column
    return sorted(columns)


@dataclass
class RuleFilter:
    """The VMs of the filtered list that a rule matches now: in its scope, and its
    expression exactly True (what the cycle counts as `matched`, before the rails)."""

    rule: Rule
    matched: list[int] = field(default_factory=list)  # VM ids, in the list's order
    examined: int = 0
    failed: int = 0  # the expression raised: no match, as in the cycle
    first_error: str = ""
    invalid: str = ""  # the rule does not compile: it matches nothing, as in the cycle


def bare_vm(columns: list[str], row: tuple[Any, ...]) -> VirtualMachine:
    """A VM holding only these columns' values, for the rule fields to read: half the cost
    of a model instance from .only() (Model.__init__ walks every field, deferred or not).
    Nothing else may touch it (no _state: it cannot be saved or refreshed)."""
    vm = VirtualMachine.__new__(VirtualMachine)
    vm.__dict__.update(zip(columns, row, strict=True))
    return vm


def rule_filter(rule: Rule, vms: QuerySet[VirtualMachine], ctx: Context) -> RuleFilter:
    """Evaluate the rule over the already filtered and sorted VMs, in one query.

    A rule is Python, so this reads every filtered VM (not only a page), only the columns
    the rule reads, and pages the matching ids in memory: its cost grows with the VMs the
    other filters leave (bench/web.py), and is paid only when the filter is used.
    """
    found = RuleFilter(rule)
    try:
        compiled = compile_valid(rule, ctx.now)
    except RuleError as exc:
        found.invalid = str(exc)
        return found
    scope, names = Scope(rule), set(compiled.fields)
    columns = rule_columns(names)
    for row in vms.values_list(*columns).iterator(chunk_size=2000):
        found.examined += 1
        vm = bare_vm(columns, row)
        if not scope(vm):
            continue
        try:
            if compiled.matches(values_for(vm, names, ctx)):
                found.matched.append(vm.id)
        except Exception as exc:  # a rule failing on a VM does not match it (engine.py)
            found.failed += 1
            found.first_error = found.first_error or f"VM {vm.id}: {type(exc).__name__}: {exc}"
    return found


# --- one VM ------------------------------------------------------------------------------------


@dataclass
class RuleVerdict:
    """What one rule makes of this VM now, and why (the cycle's rails, engine.py)."""

    rule: Rule
    in_scope: bool = False
    value: object = None  # the expression: True, False or None (unknown)
    error: str = ""  # the expression raised
    invalid: str = ""  # the rule does not compile: the cycle skips it
    evidence: list[tuple[str, object]] = field(default_factory=list)
    applies: bool = False  # the action applies in the VM's state
    exempt: bool = False
    cooling_until: datetime | None = None

    @property
    def verdict(self) -> str:
        if self.invalid or self.error:
            return "error"
        if self.value is True:
            return "yes"
        return "no" if self.value is False else "unknown"


def explain_rules(vm: VirtualMachine, ctx: Context) -> list[RuleVerdict]:
    rules = list(Rule.objects.filter(enabled=True))
    cooling = cooling_records(vm, rules, ctx.now)
    out = []
    for rule in rules:
        verdict = RuleVerdict(rule, in_scope=Scope(rule)(vm), exempt=is_exempt(vm))
        action = ACTIONS.get(rule.action)
        verdict.applies = action is not None and action.applies(vm.state_name, vm.lcm_state_name)
        try:
            compiled = compile_valid(rule, ctx.now)
        except RuleError as exc:
            verdict.invalid = str(exc)
            out.append(verdict)
            continue
        values = values_for(vm, set(compiled.fields), ctx)
        try:
            verdict.value = compiled.evaluate(values)
        except Exception as exc:  # the cycle counts it as failed: no match
            verdict.error = f"{type(exc).__name__}: {exc}"
        # The names the action record would keep, shown readably (durations, local times).
        verdict.evidence = [(n, shown(values[n])) for n in sorted(evidence(values, compiled))]
        verdict.cooling_until = cooling_until(rule, cooling, ctx.now)
        out.append(verdict)
    return out


def shown(value: object) -> str:
    if value is None:
        return "missing"
    if isinstance(value, timedelta):
        return duration(value.total_seconds())
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def cooling_records(
    vm: VirtualMachine, rules: list[Rule], now: datetime
) -> list[tuple[int | None, datetime, str]]:
    """This VM's records that may hold a rule's cooldown (one query for all the rules)."""
    longest = max((r.cooldown for r in rules if r.cooldown), default=None)
    if longest is None:
        return []
    return list(
        ActionRecord.objects.filter(
            vm_id=vm.id, time__gte=now - longest, outcome__in=COOLING_OUTCOMES
        ).values_list("rule_id", "time", "outcome")
    )


def cooling_until(
    rule: Rule, records: list[tuple[int | None, datetime, str]], now: datetime
) -> datetime | None:
    """As engine.cooling_vms: would-be actions count only while the rule is in dry run."""
    if not rule.cooldown:
        return None
    outcomes = COOLING_OUTCOMES if rule.dry_run or settings.RULES_DRY_RUN else REAL_OUTCOMES
    times = [
        t for rule_id, t, outcome in records
        if rule_id == rule.pk and outcome in outcomes and t >= now - rule.cooldown
    ]  # fmt: skip
    return max(times) + rule.cooldown if times else None
