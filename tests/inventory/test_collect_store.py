"""The collection step's storing logic: upserts, samples, gone VMs, error conditions."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import (
    CollectionRun,
    ErrorMessage,
    Host,
    IdleSample,
    VirtualMachine,
)
from idlevm.one.records import IdleProblem
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db


def source_with(n_vms: int, hosts: int = 2) -> StaticSource:
    hs = [host(h, vm_ids=tuple(i for i in range(n_vms) if i % hosts == h)) for h in range(hosts)]
    vms = [vm(i, host_id=i % hosts, idle=idle_record(seq=i)) for i in range(n_vms)]
    return StaticSource(hs, vms)


def test_first_cycle_stores_hosts_vms_and_one_sample_per_record():
    run = collect_once(source_with(6))
    assert run.outcome == CollectionRun.Outcome.OK
    assert (run.hosts, run.vms, run.new_samples) == (2, 6, 6)
    stored = VirtualMachine.objects.get(id=3)
    assert (stored.name, stored.owner, stored.host_id, stored.state_name) == (
        "vm3",
        "alice",
        1,
        "ACTIVE",
    )
    assert stored.lcm_state_name == "RUNNING" and stored.idle is True
    # idle_since is placed on the host clock: received - (agent time - agent idle_since)
    assert stored.idle_received and stored.idle_since
    assert stored.idle_received - stored.idle_since == timedelta(seconds=3600)
    assert Host.objects.get(id=0).name == "node0"
    assert IdleSample.objects.count() == 6


def test_records_already_seen_do_not_add_samples_new_ones_do():
    source = source_with(4)
    collect_once(source)
    again = collect_once(source)
    assert again.new_samples == 0 and IdleSample.objects.count() == 4
    fresh = replace(source.vm_list[0], idle=idle_record(seq=99, idle=False, idle_since=None))
    third = collect_once(source.with_vm(fresh))
    assert third.new_samples == 1
    assert IdleSample.objects.filter(vm_id=0).count() == 2
    assert VirtualMachine.objects.get(id=0).idle is False


def test_vm_missing_from_the_pool_is_marked_gone_but_kept_with_its_history():
    source = source_with(3)
    collect_once(source)
    collect_once(StaticSource(source.host_list, source.vm_list[:2]))
    gone = VirtualMachine.objects.get(id=2)
    assert gone.gone_at is not None
    assert IdleSample.objects.filter(vm_id=2).count() == 1
    collect_once(source)  # it may come back (e.g. a filter glitch): it is live again
    assert VirtualMachine.objects.get(id=2).gone_at is None


def test_query_count_does_not_grow_with_the_pool():
    counts = []
    for n in (20, 400):
        VirtualMachine.objects.all().delete()
        with CaptureQueriesContext(connection) as ctx:
            collect_once(source_with(n, hosts=4))
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_error_conditions_are_recorded_once_and_their_time_moves():
    now = int(time.time())
    source = StaticSource(
        [host(0, vm_ids=(1, 2, 3, 4)), host(1, state=3, name="broken")],
        [
            vm(1, idle=None),  # running, no data
            vm(2, idle=idle_record(received=now - 3600)),  # stale
            vm(3, lcm_state=16, idle=None),  # UNKNOWN
            vm(4, idle=None, idle_problems=(IdleProblem(4, "IDLE_CPU: not a number"),)),
            vm(5, state=8, lcm_state=0, idle=None),  # POWEROFF: no data is fine
        ],
    )
    t0 = timezone.now()
    collect_once(source, now=t0)
    kinds = set(ErrorMessage.objects.values_list("kind", "subject"))
    assert kinds == {
        ("idle_missing", "vm:1"),
        ("idle_stale", "vm:2"),
        ("vm_failure", "vm:3"),
        ("idle_missing", "vm:4"),
        ("idle_malformed", "vm:4"),
        ("host_state", "host:1"),
    }
    collect_once(source, now=t0 + timedelta(minutes=5))
    stale = ErrorMessage.objects.get(kind="idle_stale", subject="vm:2")
    assert ErrorMessage.objects.count() == 6
    assert stale.count == 2 and stale.modified == t0 + timedelta(minutes=5)
    assert stale.first_seen == t0


def test_a_cleared_error_that_happens_again_is_open_again():
    source = StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=None)])
    collect_once(source)
    ErrorMessage.objects.update(cleared=True, cleared_at=timezone.now(), note="fixed agent")
    collect_once(source)
    error = ErrorMessage.objects.get()
    assert error.cleared is False and error.cleared_at is None
    assert error.note == "fixed agent" and error.count == 2


def test_a_just_booted_vm_gets_one_stale_period_before_missing_data_is_an_error():
    source = StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=None, stime=int(time.time()))])
    collect_once(source)
    assert not ErrorMessage.objects.exists()


def test_host_idle_data_for_a_vm_not_on_that_host_is_refused():
    rec = idle_record(seq=5)
    source = StaticSource(
        [host(0, vm_ids=(1,)), host(1, vm_ids=(), idle={1: rec})],  # host 1 speaks for VM 1
        [vm(1, host_id=0, idle=None)],
    )
    collect_once(source)
    assert VirtualMachine.objects.get(id=1).idle is None
    assert ErrorMessage.objects.filter(kind="idle_wrong_host", subject="vm:1").exists()


def test_host_idle_data_for_a_vm_outside_its_vms_list_is_a_wrong_host_error():
    now = int(time.time())
    value = f"1;7:seq=1,ts={now},rcv={now},state=idle,since={now - 60}"
    from idlevm.one.idle import parse_host_idle

    records, problems = parse_host_idle(value, host_vm_ids=(1,))
    source = StaticSource(
        [host(0, vm_ids=(1,), idle=records, idle_problems=tuple(problems))], [vm(7, idle=None)]
    )
    collect_once(source)
    assert ErrorMessage.objects.filter(kind="idle_wrong_host", subject="vm:7").exists()
    assert not ErrorMessage.objects.filter(kind="idle_malformed").exists()


def test_a_record_received_in_the_future_is_refused():
    future = idle_record(received=int(time.time()) + 3600)
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=future)]))
    assert VirtualMachine.objects.get(id=1).idle is None
    assert "future" in ErrorMessage.objects.get(kind="idle_malformed").message


def test_a_future_record_on_one_path_does_not_hide_a_good_one_on_the_other():
    now = int(time.time())
    good = idle_record(seq=3, received=now - 30)
    future = replace(idle_record(seq=4, received=now + 900), source="host")
    collect_once(StaticSource([host(0, vm_ids=(1,), idle={1: future})], [vm(1, idle=good)]))
    assert VirtualMachine.objects.get(id=1).idle_seq == 3
    assert ErrorMessage.objects.filter(kind="idle_malformed", subject="vm:1").exists()


def test_newer_of_monitoring_and_host_record_wins():
    now = int(time.time())
    old_vm = idle_record(seq=1, received=now - 60, idle=True)
    new_host = replace(idle_record(seq=2, received=now - 10, idle=False, idle_since=None),
                       source="host")  # fmt: skip
    source = StaticSource([host(0, vm_ids=(1,), idle={1: new_host})], [vm(1, idle=old_vm)])
    collect_once(source)
    stored = VirtualMachine.objects.get(id=1)
    assert (stored.idle, stored.idle_seq, stored.idle_source) == (False, 2, "host")


def test_a_failure_while_storing_changes_nothing_and_is_recorded(monkeypatch):
    source = source_with(3)
    collect_once(source)
    before = list(VirtualMachine.objects.values_list("id", "name", "last_seen"))
    renamed = source.with_vm(replace(source.vm_list[0], name="renamed"))

    def explode(*args, **kwargs):
        raise ValueError("disk full")

    monkeypatch.setattr("idlevm.inventory.collect.prune_samples", explode)
    run = collect_once(renamed)
    assert run.outcome == CollectionRun.Outcome.FAILED and "disk full" in run.message
    assert list(VirtualMachine.objects.values_list("id", "name", "last_seen")) == before
    assert ErrorMessage.objects.filter(kind="collection_failed").exists()


def test_old_samples_are_pruned(settings):
    settings.IDLE_SAMPLE_RETENTION_DAYS = 1
    old = int(time.time()) - 3 * 86400
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=idle_record(received=old))]))
    assert IdleSample.objects.count() == 0  # stored, then pruned in the same cycle
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=idle_record(seq=2))]))
    assert IdleSample.objects.count() == 1


def test_a_cycle_without_data_keeps_the_last_record_which_then_goes_stale():
    t0 = timezone.now()
    rec = idle_record(received=int(t0.timestamp()))
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=rec)]), now=t0)
    silent = StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=None)])
    collect_once(silent, now=t0 + timedelta(minutes=5))
    kept = VirtualMachine.objects.get(id=1)
    assert (kept.idle, kept.idle_seq) == (True, rec.seq)  # kept, with its true age
    assert not ErrorMessage.objects.exists()
    collect_once(silent, now=t0 + timedelta(minutes=20))
    assert ErrorMessage.objects.get().kind == "idle_stale"  # stale, not "missing"


def test_an_older_record_never_replaces_a_newer_one():
    now = int(time.time())
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=idle_record(seq=5))]))
    older = idle_record(seq=4, received=now - 600, idle=False, idle_since=None)
    run = collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=older)]))
    stored = VirtualMachine.objects.get(id=1)
    assert (stored.idle, stored.idle_seq) == (True, 5)
    assert run.new_samples == 0 and IdleSample.objects.count() == 1


def test_an_unexpected_failure_while_fetching_ends_as_a_failed_run():
    class Broken(StaticSource):
        def vms(self):
            raise RuntimeError("bug in a parser")

    run = collect_once(Broken([host(0)], []))
    assert run.outcome == "failed" and "RuntimeError" in run.message
    assert ErrorMessage.objects.get().kind == "one_error"
