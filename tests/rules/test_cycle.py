"""Rules acting on the simulated cloud over real HTTP: who is suspended, and who never is."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import CollectionRun, ErrorMessage
from idlevm.one.client import OneClient
from idlevm.rules.cycle import run_rules
from idlevm.rules.models import ActionRecord
from tests.rules.conftest import add_vm, busy_monitoring, idle_monitoring, make_rule, state

pytestmark = pytest.mark.django_db


def cycle(*flags: str) -> CollectionRun:
    call_command("suspend_service", "--once", *flags)
    return CollectionRun.objects.order_by("-id")[0]


def test_a_matching_rule_suspends_exactly_the_idle_vms(sim_settings, sim):
    idle = [add_vm(sim, f"idle-{i}", idle_monitoring(hours=5)) for i in range(3)]
    short = add_vm(sim, "idle-briefly", idle_monitoring(hours=1))
    busy = add_vm(sim, "busy", busy_monitoring())
    silent = add_vm(sim, "no-agent")
    make_rule()
    run = cycle()
    assert [state(sim, i) for i in idle] == ["SUSPENDED/LCM_INIT"] * 3
    assert {state(sim, i) for i in (short, busy, silent)} == {"ACTIVE/RUNNING"}
    records = ActionRecord.objects.order_by("vm_id")
    assert [(r.vm_id, r.outcome, r.dry_run) for r in records] == [(i, "done", False) for i in idle]
    first = records[0]
    assert (first.rule_name, first.action, first.vm_name, first.vm_owner) == (
        "suspend-idle", "suspend", "idle-0", "alice",
    )  # fmt: skip
    assert first.state_before == "ACTIVE/RUNNING" and first.state_after == "SUSPENDED/LCM_INIT"
    assert first.evidence["idle"] is True and first.evidence["idle_for"].endswith("s")
    assert first.rule_expression == "idle and idle_for > hours(4)"
    assert run.actions == {"done": 3} and run.evaluate_seconds is not None


def test_a_dry_run_rule_records_what_it_would_do_and_changes_nothing(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule(dry_run=True)
    run = cycle()
    assert state(sim, vm) == "ACTIVE/RUNNING"
    record = ActionRecord.objects.get()
    assert (record.outcome, record.dry_run, record.vm_id) == ("would", True, vm)
    assert run.actions == {"would": 1}


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_global_dry_run_overrides_live_rules(sim_settings, sim, how):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule(dry_run=False)
    if how == "setting":
        sim_settings.RULES_DRY_RUN = True
    cycle("--dry-run") if how == "flag" else cycle()
    assert state(sim, vm) == "ACTIVE/RUNNING"
    assert ActionRecord.objects.get().outcome == "would"


@pytest.mark.parametrize(
    "expression",
    ["idle and idle_for > hours(4)", "not (cpu_pct > 50)", "not (idle_for < hours(1))"],
)
def test_stale_or_missing_data_never_triggers_an_action(sim_settings, sim, expression):
    stale = add_vm(sim, "stale", idle_monitoring(hours=10, age=3600))  # 1 h > 900 s
    silent = add_vm(sim, "silent")
    make_rule(expression=expression)
    cycle()
    assert {state(sim, stale), state(sim, silent)} == {"ACTIVE/RUNNING"}
    assert not ActionRecord.objects.exists()
    assert ErrorMessage.objects.filter(kind="idle_stale", subject=f"vm:{stale}").exists()


def test_a_rule_matching_more_vms_than_its_limit_takes_no_action_at_all(sim_settings, sim):
    vms = [add_vm(sim, f"idle-{i}", idle_monitoring()) for i in range(3)]
    rule = make_rule(max_actions_per_cycle=2)
    cycle()
    assert {state(sim, v) for v in vms} == {"ACTIVE/RUNNING"}  # not "the first two"
    assert not ActionRecord.objects.exists()
    error = ErrorMessage.objects.get(kind="rule_limit", subject=f"rule:{rule.pk}")
    assert "suspend-idle" in error.message and "matched 3 VMs" in error.message
    rule.refresh_from_db()
    assert rule.last_cycle["matched"] == 3 and rule.last_cycle["planned"] == 0


def test_the_global_limit_stops_every_real_action_of_the_cycle(sim_settings, sim):
    sim_settings.MAX_ACTIONS_PER_CYCLE = 2
    alice = [add_vm(sim, f"a-{i}", idle_monitoring(), owner="alice") for i in range(2)]
    bob = [add_vm(sim, f"b-{i}", idle_monitoring(), owner="bob") for i in range(2)]
    make_rule(name="alice", all_vms=False, owners=["alice"])
    make_rule(name="bob", all_vms=False, owners=["bob"])
    cycle()
    assert {state(sim, v) for v in alice + bob} == {"ACTIVE/RUNNING"}
    error = ErrorMessage.objects.get(kind="actions_limit")
    assert "4 actions" in error.message and "global limit of 2" in error.message


def test_the_percentage_limit_counts_running_vms(sim_settings, sim):
    sim_settings.MAX_ACTIONS_PERCENT = 10.0  # of 12 running: 2 (rounded up)
    idle = [add_vm(sim, f"idle-{i}", idle_monitoring()) for i in range(3)]
    for i in range(9):
        add_vm(sim, f"busy-{i}", busy_monitoring())
    make_rule()
    cycle()
    assert {state(sim, v) for v in idle} == {"ACTIVE/RUNNING"}
    assert "global limit of 2" in ErrorMessage.objects.get(kind="actions_limit").message


def test_exempt_vms_are_never_acted_on(sim_settings, sim):
    exempt = add_vm(sim, "keep-me", idle_monitoring(), user_template={"IDLEVM_EXEMPT": "yes"})
    other = add_vm(sim, "take-me", idle_monitoring())
    rule = make_rule()
    cycle()
    assert state(sim, exempt) == "ACTIVE/RUNNING" and state(sim, other) == "SUSPENDED/LCM_INIT"
    rule.refresh_from_db()
    assert rule.last_cycle["exempt"] == 1
    assert not ActionRecord.objects.filter(vm_id=exempt).exists()


def test_a_vm_exempted_after_collection_is_skipped_with_the_reason(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    client = OneClient(sim.url, sim.session)
    run = collect_once(client)
    with sim.cloud.lock:  # the owner edits the VM's template between collect and act
        sim.cloud.vms[vm].user_template["IDLEVM_EXEMPT"] = "YES"
        sim.cloud.vms[vm].touch()  # drops the simulator's cached XML of the VM
    run_rules(client, run)
    assert state(sim, vm) == "ACTIVE/RUNNING"
    record = ActionRecord.objects.get()
    assert record.outcome == "skipped" and "IDLEVM_EXEMPT" in record.message


def test_a_vm_that_changed_state_since_collection_is_skipped(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    client = OneClient(sim.url, sim.session)
    run = collect_once(client)
    client.vm_action("poweroff", vm)  # someone else acted first
    run_rules(client, run)
    record = ActionRecord.objects.get()
    assert record.outcome == "skipped"
    assert "ACTIVE/RUNNING -> POWEROFF/LCM_INIT" in record.message
    assert state(sim, vm) == "POWEROFF/LCM_INIT"


def test_a_vm_that_became_busy_since_collection_is_skipped(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    client = OneClient(sim.url, sim.session)
    run = collect_once(client)
    sim.cloud.set_vm_monitoring(vm, busy_monitoring())
    run_rules(client, run)
    assert ActionRecord.objects.get().message == "the rule no longer matches the re-read VM"
    assert state(sim, vm) == "ACTIVE/RUNNING"


def test_a_failed_action_is_recorded_with_openebulas_message_and_becomes_an_error(
    sim_settings, sim
):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    sim.cloud.set_fault(fail="ACTION", method="one.vm.action", message="driver says no")
    run = cycle()
    record = ActionRecord.objects.get()
    assert record.outcome == "failed" and "driver says no" in record.message
    error = ErrorMessage.objects.get(kind="action_failed", subject=f"vm:{vm}")
    assert "suspend-idle" in error.message and "driver says no" in error.message
    assert run.actions == {"failed": 1}
    cycle()  # the cooldown holds: no retry every cycle, and the error is not duplicated
    assert ActionRecord.objects.count() == 1
    assert ErrorMessage.objects.filter(kind="action_failed").count() == 1


def test_the_cooldown_stops_a_second_action_on_the_same_vm(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    rule = make_rule()
    cycle()
    OneClient(sim.url, sim.session).vm_action("resume", vm)  # its owner came back...
    sim.cloud.set_vm_monitoring(vm, idle_monitoring())  # ...and left again
    cycle()
    assert state(sim, vm) == "ACTIVE/RUNNING"
    rule.refresh_from_db()
    assert rule.last_cycle["cooling"] == 1
    rule.cooldown = rule.cooldown * 0
    rule.save()
    cycle()
    assert state(sim, vm) == "SUSPENDED/LCM_INIT"
    assert ActionRecord.objects.filter(outcome="done").count() == 2


def test_one_action_per_vm_per_cycle_the_first_rule_wins(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule(name="second", order=20, action="poweroff")
    make_rule(name="first", order=10)
    cycle()
    assert [(r.rule_name, r.action) for r in ActionRecord.objects.all()] == [("first", "suspend")]
    assert state(sim, vm) == "SUSPENDED/LCM_INIT"


def test_scope_limits_a_rule_to_its_vms_owners_groups_and_names(sim_settings, sim):
    listed = add_vm(sim, "listed", idle_monitoring(), owner="carol")
    by_owner = add_vm(sim, "owned", idle_monitoring(), owner="bob")
    by_group = add_vm(sim, "grouped", idle_monitoring(), owner="dave", group="physics")
    by_name = add_vm(sim, "test-7", idle_monitoring(), owner="erin")
    outside = add_vm(sim, "prod-1", idle_monitoring(), owner="frank")
    make_rule(all_vms=False, vms=[listed], owners=["bob"], groups=["physics"],
              name_pattern="test-*")  # fmt: skip
    cycle()
    acted = set(ActionRecord.objects.values_list("vm_id", flat=True))
    assert acted == {listed, by_owner, by_group, by_name}
    assert state(sim, outside) == "ACTIVE/RUNNING"


def test_actions_apply_only_in_their_states(sim_settings, sim):
    pending = add_vm(sim, "queued", state="PENDING")
    running = add_vm(sim, "running", busy_monitoring())
    make_rule(expression='name == "queued" or name == "running"', action="hold")
    cycle()
    assert state(sim, pending) == "HOLD/LCM_INIT" and state(sim, running) == "ACTIVE/RUNNING"


def test_an_invalid_rule_is_skipped_and_reported_the_others_run(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    broken = make_rule(name="broken", order=1)
    type(broken).objects.filter(pk=broken.pk).update(expression="idle_for > 4")  # bypasses clean
    make_rule(name="good", order=2)
    cycle()
    assert state(sim, vm) == "SUSPENDED/LCM_INIT"
    error = ErrorMessage.objects.get(kind="rule_invalid", subject=f"rule:{broken.pk}")
    assert "broken" in error.message and "hours(4)" in error.message


def test_a_rule_failing_at_run_time_matches_nothing_and_is_reported(sim_settings, sim):
    add_vm(sim, "idle", idle_monitoring())
    rule = make_rule(expression="idle and cpu_pct / 0 > 1")
    cycle()
    assert not ActionRecord.objects.exists()
    error = ErrorMessage.objects.get(kind="rule_failed", subject=f"rule:{rule.pk}")
    assert "ZeroDivisionError" in error.message


def test_terminate_needs_the_rules_explicit_confirmation(sim_settings, sim):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="confirm_destructive"):
        make_rule(action="terminate")
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule(action="terminate", confirm_destructive=True)
    cycle()
    assert state(sim, vm).startswith("DONE")


def test_log_rules_record_and_send_nothing(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule(action="log")
    cycle()
    assert state(sim, vm) == "ACTIVE/RUNNING"
    record = ActionRecord.objects.get()
    assert (record.action, record.outcome, record.dry_run) == ("log", "done", False)


def test_no_rules_run_after_a_failed_collection(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    cycle()  # the VM is known, with fresh idle data
    sim.cloud.set_vm_state(vm, "ACTIVE", "RUNNING")  # resumed by its owner
    sim.cloud.set_fault(fail="INTERNAL", method="one.vmpool.infoextended")
    with pytest.raises(CommandError):
        cycle()
    assert ActionRecord.objects.count() == 1 and state(sim, vm) == "ACTIVE/RUNNING"


def test_action_records_are_append_only(sim_settings, sim):
    add_vm(sim, "idle", idle_monitoring())
    make_rule()
    cycle()
    record = ActionRecord.objects.get()
    record.outcome = "failed"
    with pytest.raises(ValueError, match="append-only"):
        record.save()
    with pytest.raises(ValueError, match="append-only"):
        record.delete()
    assert ActionRecord.objects.get().outcome == "done"


def test_a_global_dry_run_shows_the_global_limit_stopping_the_rules(sim_settings, sim):
    sim_settings.MAX_ACTIONS_PER_CYCLE = 2
    vms = [add_vm(sim, f"idle-{i}", idle_monitoring()) for i in range(3)]
    make_rule()
    cycle("--dry-run")
    assert not ActionRecord.objects.exists()  # what would happen live: nothing
    assert ErrorMessage.objects.get(kind="actions_limit").message.startswith("(dry run)")
    assert {state(sim, v) for v in vms} == {"ACTIVE/RUNNING"}


def test_previewing_a_live_rule_does_not_hold_back_its_real_actions(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring())
    make_rule()
    cycle("--dry-run")
    assert ActionRecord.objects.get().outcome == "would"
    cycle()  # the would-be record does not start the cooldown of the live rule
    assert state(sim, vm) == "SUSPENDED/LCM_INIT"


def test_a_rule_deleted_or_disabled_between_evaluate_and_act_takes_no_action(sim_settings, sim):
    from idlevm.rules.act import act
    from idlevm.rules.cycle import context, evaluate, limits

    kept = add_vm(sim, "kept", idle_monitoring(), owner="alice")
    dropped = add_vm(sim, "dropped", idle_monitoring(), owner="bob")
    deleted = add_vm(sim, "deleted", idle_monitoring(), owner="carol")
    make_rule(name="alice", all_vms=False, owners=["alice"])
    off = make_rule(name="bob", all_vms=False, owners=["bob"])
    gone = make_rule(name="carol", all_vms=False, owners=["carol"], dry_run=True)
    client = OneClient(sim.url, sim.session)
    collect_once(client)
    ctx = context()
    evaluation = evaluate(ctx, limits())
    off.enabled = False
    off.save()  # an operator, in the console, while the cycle runs
    gone.delete()
    act(client, evaluation.planned, ctx)
    assert state(sim, kept) == "SUSPENDED/LCM_INIT"
    assert state(sim, dropped) == "ACTIVE/RUNNING" and state(sim, deleted) == "ACTIVE/RUNNING"
    assert list(ActionRecord.objects.values_list("vm_id", flat=True)) == [kept]


def test_data_from_a_host_clock_slightly_ahead_is_fresh_not_stale(sim_settings, sim):
    vm = add_vm(sim, "idle", idle_monitoring(age=-30))  # received 30 s "in the future"
    make_rule(expression="idle and idle_for > hours(4) and not stale")
    cycle()
    assert state(sim, vm) == "SUSPENDED/LCM_INIT"
