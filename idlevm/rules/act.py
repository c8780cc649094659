"""The act step: send each planned action to OpenNebula, one VM at a time, and record it.

`act_one` is one action: write the record (pending), re-read the VM, take it only if the
VM is still what the rule saw (same state, not exempt, the rule still matches on the fresh
facts), then complete the record with the outcome and the state after. A record is
committed before anything is sent, so a process killed half-way leaves a `pending` record
(closed as `interrupted` by the next cycle, and counted by the cooldown): never a duplicate
action.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from idlevm.inventory.collect import FUTURE_SKEW_SECONDS, IDLE_COLUMNS, idle_values, is_new
from idlevm.inventory.conditions import Condition, Kind
from idlevm.inventory.models import CollectionRun, VirtualMachine
from idlevm.one import records as one
from idlevm.one.errors import OneError, OneNoExistsError
from idlevm.rules.engine import Planned, values_for
from idlevm.rules.fields import Context, is_exempt
from idlevm.rules.models import ActionRecord, Rule

log = logging.getLogger("idlevm.rules")
Outcome = ActionRecord.Outcome


class ActionTarget(Protocol):
    """What the act step needs from OpenNebula (idlevm.one.OneClient)."""

    def vm(self, vm_id: int) -> one.VirtualMachine: ...
    def vm_action(self, action: str, vm_id: int) -> None: ...


@dataclass
class Acted:
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> records
    conditions: list[Condition] = field(default_factory=list)
    abandoned: int = 0  # not started: the service was asked to stop

    def count(self, outcome: str) -> None:
        key = str(outcome)  # the plain value, not the enum member (stored as JSON)
        self.counts[key] = self.counts.get(key, 0) + 1


def act(
    target: ActionTarget,
    planned: list[Planned],
    ctx: Context,
    run: CollectionRun | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Acted:
    acted = Acted()
    planned = still_wanted(planned)
    # What sends nothing (dry run, `log`) is recorded at once, in one transaction: a commit
    # per record would cost a disk sync each on SQLite.
    recorded = [item for item in planned if records_only(item)]
    with transaction.atomic():
        records = ActionRecord.objects.bulk_create(
            [new_record(item, run, completed=True) for item in recorded]
        )
    for record in records:
        acted.count(record.outcome)
    if records:
        log.info("recorded %s action(s) that send nothing (dry run or log)", len(records))
    sending = [item for item in planned if not records_only(item)]
    for index, item in enumerate(sending):
        if stop():
            acted.abandoned = len(sending) - index
            log.warning("stopping: %s planned action(s) not started", acted.abandoned)
            break
        try:
            record = act_one(target, item, ctx, run)
        except Exception:  # one broken action must not stop the others; its record stays
            log.exception("action on VM %s by rule %s failed unexpectedly", item.vm.id,
                          item.rule.name)  # fmt: skip
            acted.count("error")
            continue
        acted.count(record.outcome)
        if record.outcome == Outcome.FAILED:
            message = f"{record.action} of VM {record.vm_name} (#{record.vm_id}) by rule "
            message += f"{record.rule_name!r} failed: {record.message}"
            acted.conditions.append(Condition(Kind.ACTION_FAILED, f"vm:{record.vm_id}", message))
    return acted


def still_wanted(planned: list[Planned]) -> list[Planned]:
    """The plan without actions of rules deleted, disabled or edited since evaluation (the
    console and `rules import` do not wait for the cycle); a rule switched to dry run since
    only records."""
    current = {
        pk: (enabled, dry_run, expression, action)
        for pk, enabled, dry_run, expression, action in Rule.objects.filter(
            pk__in={item.rule.pk for item in planned}
        ).values_list("pk", "enabled", "dry_run", "expression", "action")
    }
    kept = []
    for item in planned:
        now = current.get(item.rule.pk)
        if now is None or not now[0] or now[2:] != (item.rule.expression, item.rule.action):
            log.info("rule %s changed since evaluation: its action on VM %s is dropped",
                     item.rule.name, item.vm.id)  # fmt: skip
            continue
        item.dry_run = item.dry_run or now[1]
        kept.append(item)
    return kept


def records_only(item: Planned) -> bool:
    """Dry run and `log` send nothing: the record is the whole action."""
    return item.dry_run or item.action.one_action is None


def new_record(item: Planned, run: CollectionRun | None, completed: bool = False) -> ActionRecord:
    vm, now = item.vm, timezone.now()
    record = ActionRecord(
        time=now, run=run, rule=item.rule, rule_name=item.rule.name,
        rule_expression=item.rule.expression, vm_id=vm.id, vm_name=vm.name, vm_owner=vm.owner,
        vm_group=vm.group, vm_host=vm.host_name, action=item.action.name, dry_run=item.dry_run,
        state_before=state_of(vm), evidence=item.evidence, outcome=Outcome.PENDING,
    )  # fmt: skip
    if completed:
        record.outcome = Outcome.WOULD if item.dry_run else Outcome.DONE
        record.finished = now
    return record


def act_one(
    target: ActionTarget, item: Planned, ctx: Context, run: CollectionRun | None = None
) -> ActionRecord:
    vm, action = item.vm, item.action
    if records_only(item):
        record = new_record(item, run, completed=True)
        record.save(force_insert=True)
        return record
    assert action.one_action is not None
    record = new_record(item, run)
    record.save(force_insert=True)
    try:
        fresh = target.vm(vm.id)
    except OneNoExistsError:
        return finish(record, Outcome.SKIPPED, "the VM no longer exists")
    except OneError as exc:
        return finish(record, Outcome.FAILED, f"could not re-read the VM: {exc}")
    reason = changed(item, fresh, ctx)
    if reason:
        return finish(record, Outcome.SKIPPED, reason, state_after=state_of(fresh))
    try:
        target.vm_action(action.one_action, vm.id)
    except OneError as exc:
        return finish(record, Outcome.FAILED, str(exc), state_after=state_of(fresh))
    return finish(record, Outcome.DONE, state_after=state_after(target, vm.id))


def changed(item: Planned, fresh: one.VirtualMachine, ctx: Context) -> str:
    """Why the action must not be taken on the re-read VM ("" if it still should)."""
    vm = item.vm
    before, after = state_of(vm), state_of(fresh)
    if after != before:
        return f"the VM changed state since collection ({before} -> {after})"
    if not item.action.applies(fresh.state_name, fresh.lcm_state_name):
        return f"{item.action.name} does not apply in state {after}"
    current = refreshed(vm, fresh)
    if is_exempt(current):
        return "the VM's owner set IDLEVM_EXEMPT since collection"
    if (current.owner, current.group, current.name) != (vm.owner, vm.group, vm.name):
        return "the VM's name, owner or group changed since collection"
    # Fresh facts, judged at the present time (a long act step ages the data).
    now = ctx.at(timezone.now())
    try:
        still = item.compiled.matches(values_for(current, set(item.compiled.fields), now))
    except Exception as exc:  # the rule failing on fresh data: do nothing
        return f"the rule failed on the re-read VM: {type(exc).__name__}: {exc}"
    if not still:
        return "the rule no longer matches the re-read VM"
    return ""


def refreshed(vm: VirtualMachine, fresh: one.VirtualMachine) -> VirtualMachine:
    """The stored VM with what one.vm.info says now (a copy: nothing is saved)."""
    current = copy.copy(vm)
    current.name, current.owner, current.group = fresh.name, fresh.uname, fresh.gname
    current.state_name, current.lcm_state_name = fresh.state_name, fresh.lcm_state_name
    current.user_template = dict(fresh.user_template)
    rec = fresh.idle
    stored = (vm.idle_seq, vm.idle_time, vm.idle_received)
    # Records received in the future are refused, as in collection.
    latest = timezone.now().timestamp() + FUTURE_SKEW_SECONDS
    if rec is not None and is_new(rec, stored) and rec.received <= latest:
        for column, value in zip(IDLE_COLUMNS, idle_values(rec), strict=True):
            setattr(current, column, value)
    return current


def state_of(vm: VirtualMachine | one.VirtualMachine) -> str:
    return f"{vm.state_name}/{vm.lcm_state_name}"


def state_after(target: ActionTarget, vm_id: int) -> str:
    try:
        return state_of(target.vm(vm_id))
    except OneError:
        return ""


def finish(
    record: ActionRecord, outcome: str, message: str = "", state_after: str = ""
) -> ActionRecord:
    record.outcome, record.message, record.state_after = outcome, message[:2000], state_after
    record.finished = timezone.now()
    record.save()
    level = logging.WARNING if outcome == Outcome.FAILED else logging.INFO
    log.log(level, "%s%s", record, f": {message}" if message else "")
    return record


def close_interrupted_actions() -> int:
    """Pending records of a process that died: the outcome is unknown (the cooldown holds)."""
    pending = ActionRecord.objects.filter(outcome=Outcome.PENDING)
    return pending.update(
        outcome=Outcome.INTERRUPTED, finished=timezone.now(),
        message="the process ended before the outcome was known; check the VM",
    )  # fmt: skip
