"""A rule's preview: what it would do if a cycle ran now, and why each VM it matches would or
would not be acted on. Nothing is recorded.

The verdict is the engine's own (`evaluate_rules` over the stored VMs, with the other enabled
rules in their order, so the one-action-per-VM rail and the global limit are those of a real
cycle); the listing then explains each VM in the rule's scope with the engine's helpers, in
the engine's order of rails (state, exemption, cooldown, claimed, limits).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from idlevm.inventory.models import VirtualMachine
from idlevm.rules import cycle
from idlevm.rules.actions import ACTIONS
from idlevm.rules.compiler import compile_rule
from idlevm.rules.engine import RuleResult, Scope, cooling_vms, evaluate_rules, values_for
from idlevm.rules.fields import Context, is_exempt
from idlevm.rules.models import Rule

SHOWN = 100  # VMs listed per group; the count is always the whole


@dataclass
class Group:
    """VMs with one outcome: the first SHOWN of them, and how many there are."""

    key: str
    title: str
    vms: list[tuple[VirtualMachine, str]] = field(default_factory=list)  # (vm, detail)
    count: int = 0

    def add(self, vm: VirtualMachine, detail: str = "") -> None:
        self.count += 1
        if len(self.vms) < SHOWN:
            self.vms.append((vm, detail))

    @property
    def hidden(self) -> int:
        return self.count - len(self.vms)


GROUPS = [
    ("act", "Would act on"),
    ("state", "Matched, but the action does not apply in the VM's state"),
    ("exempt", "Matched, but exempt (IDLEVM_EXEMPT)"),
    ("cooling", "Matched, but cooling down (acted on within the cooldown)"),
    ("claimed", "Matched, but an earlier rule (by order) takes the VM this cycle"),
    ("limit", "Matched, but held back by a limit"),
    ("unknown", "Unknown: the expression is neither true nor false (missing or stale data)"),
    ("failed", "Evaluation failed"),
]


@dataclass
class Preview:
    total: int  # live VMs
    in_scope: int
    result: RuleResult  # the engine's verdict for this rule (counts, planned, blocked)
    groups: list[Group]
    seconds: float  # the engine's evaluation of every rule
    dry_run: bool  # what it would do is recorded only (the rule's or the global dry run)

    @property
    def milliseconds(self) -> str:
        return f"{self.seconds * 1000:.1f}"

    @property
    def shown(self) -> list[Group]:
        return [g for g in self.groups if g.count]


def preview(rule: Rule) -> Preview:
    """The rule (valid; saved or not, edited or not) against the VMs as stored now."""
    ctx, rails = cycle.context(), cycle.limits()
    # An unsaved rule has no history: id 0 matches no ActionRecord (ids start at 1), so the
    # engine's cooldown query finds nothing instead of refusing an unsaved instance.
    subject = copy.copy(rule)
    if subject.pk is None:
        subject.pk = 0
    others = Rule.objects.filter(enabled=True).exclude(pk=subject.pk)
    rules = sorted([*others, subject], key=lambda r: (r.order, r.name))
    vms = cycle.live_vms()
    evaluation = evaluate_rules(rules, vms, ctx, rails)
    result = next(r for r in evaluation.results if r.rule is subject)
    # Claimed by the rules before this one (results are not in order: invalid rules first).
    earlier = {id(r) for r in rules[: rules.index(subject)]}
    claimed = {p.vm.id for r in evaluation.results if id(r.rule) in earlier for p in r.planned}
    groups = explain(subject, vms, ctx, result, claimed, rails.dry_run)
    in_scope = sum(1 for vm in vms if Scope(subject)(vm))
    dry_run = subject.dry_run or rails.dry_run
    return Preview(len(vms), in_scope, result, groups, evaluation.seconds, dry_run)


def explain(
    rule: Rule,
    vms: list[VirtualMachine],
    ctx: Context,
    result: RuleResult,
    claimed: set[int],
    global_dry_run: bool,
) -> list[Group]:
    """Each VM in scope in its group, with the reason."""
    groups = {key: Group(key, title) for key, title in GROUPS}
    compiled = compile_rule(rule.expression, ctx.now)
    action, scope = ACTIONS[rule.action], Scope(rule)
    cooling = cooling_vms(rule, ctx.now, dry_run=rule.dry_run or global_dry_run)
    planned = {p.vm.id for p in result.planned}
    for vm in vms:
        if not scope(vm):
            continue
        try:
            value = compiled.evaluate(values_for(vm, set(compiled.fields), ctx))
        except Exception as exc:  # as the engine: a rule that fails on a VM does not match it
            groups["failed"].add(vm, f"{type(exc).__name__}: {exc}")
            continue
        if value is None:
            groups["unknown"].add(vm, why_unknown(vm, ctx))
        elif value is not True:
            continue
        elif vm.id in planned:
            groups["act"].add(vm)
        elif not action.applies(vm.state_name, vm.lcm_state_name):
            groups["state"].add(vm, f"{rule.action} applies in {action.describe_states()}")
        elif is_exempt(vm):
            groups["exempt"].add(vm)
        elif vm.id in cooling:
            groups["cooling"].add(vm)
        elif vm.id in claimed:
            groups["claimed"].add(vm)
        else:
            groups["limit"].add(vm, held_back(result.blocked))
    return list(groups.values())


def held_back(blocked: str) -> str:
    """The limit in a word (the page shows the whole message once, above the groups)."""
    if blocked.startswith("global limit"):
        return "global limit (MAX_ACTIONS_PER_CYCLE / MAX_ACTIONS_PERCENT)"
    if blocked:
        return "the rule's max_actions_per_cycle"
    return "taken by an earlier rule, then stopped by the global limit"


def why_unknown(vm: VirtualMachine, ctx: Context) -> str:
    if vm.idle_received is None:
        return "no idle data"
    if not ctx.fresh(vm):
        age = int((ctx.now - vm.idle_received).total_seconds())
        return f"stale idle data ({age // 60} min old)" if age >= 0 else "idle data from the future"
    return "a value the rule reads is not set"


def timed(rule: Rule) -> tuple[Preview, float]:
    """The preview and how long it took in all (queries, evaluation, explanation)."""
    started = time.monotonic()
    result = preview(rule)
    return result, time.monotonic() - started
