"""The collection step of the suspension service: OpenNebula pools into the database.

`collect_once()` is one cycle: fetch (outside any transaction, it may take long), then
store everything in one transaction, so a failure mid-cycle leaves the database as it was
and is recorded as a failed CollectionRun plus an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from idlevm.inventory import conditions
from idlevm.inventory.conditions import Condition, Kind
from idlevm.inventory.models import CollectionRun, Host, IdleSample, VirtualMachine
from idlevm.inventory.upsert import upsert
from idlevm.one import records as one
from idlevm.one.errors import (
    OneAuthenticationError,
    OneAuthorizationError,
    OneError,
    OneTimeoutError,
    OneTransportError,
)
from idlevm.one.idle import newest
from idlevm.one.states import HOST_BY_NAME, LCM_BY_NAME, VM_BY_NAME, is_failure

log = logging.getLogger("idlevm.collect")

ACTIVE, RUNNING = VM_BY_NAME["ACTIVE"], LCM_BY_NAME["RUNNING"]
BAD_HOST_STATES = {HOST_BY_NAME["ERROR"], HOST_BY_NAME["OFFLINE"]}
# Host clocks drift a little (NTP keeps them close): beyond this a receive time is bogus.
FUTURE_SKEW_SECONDS = 300


class PoolSource(Protocol):
    """What collection needs from OpenNebula (idlevm.one.OneClient)."""

    def hosts(self) -> list[one.Host]: ...
    def vms(self) -> Iterable[one.VirtualMachine]: ...


@dataclass
class Fetched:
    hosts: list[one.Host]
    vms: list[one.VirtualMachine]
    seconds: float


@dataclass
class Stored:
    new_samples: int = 0
    gone: int = 0
    conditions: list[Condition] = field(default_factory=list)
    detect_seconds: float = 0.0  # finding and recording the VMs' error conditions


def epoch(seconds: int | None) -> datetime | None:
    return None if not seconds else datetime.fromtimestamp(seconds, UTC)


def fetch(source: PoolSource) -> Fetched:
    started = time.monotonic()
    hosts = source.hosts()
    vms = list(source.vms())
    return Fetched(hosts, vms, time.monotonic() - started)


def one_error_condition(exc: OneError) -> Condition:
    if isinstance(exc, OneAuthenticationError | OneAuthorizationError):
        kind = Kind.ONE_AUTH
    elif isinstance(exc, OneTimeoutError):
        kind = Kind.ONE_SLOW
    elif isinstance(exc, OneTransportError):
        kind = Kind.ONE_UNREACHABLE
    else:
        kind = Kind.ONE_ERROR
    return Condition(kind, "one", str(exc))


def collect_once(
    source: PoolSource, now: datetime | None = None, finish: bool = True
) -> CollectionRun:
    """The collect step: every OpenNebula failure and every failure while storing ends as a
    failed run with an error. Raises only if the database cannot even record that.

    With finish=False a successful run stays `running`: the service finishes it after the
    rules step, so a process killed while acting leaves a run the next cycle closes as
    interrupted, not one that claims a whole cycle.
    """
    now = now or timezone.now()
    run = CollectionRun.objects.create(started=now)
    started = time.monotonic()
    try:
        fetched = fetch(source)
    except OneError as exc:
        return finish_failed(run, one_error_condition(exc))
    except Exception as exc:  # a bug in reading a reply must not leave the run open
        log.exception("collection run %s failed while fetching", run.pk)
        message = f"fetching the pools failed: {type(exc).__name__}: {exc}"
        return finish_failed(run, Condition(Kind.ONE_ERROR, "one", message))
    try:
        with transaction.atomic():
            stored = store(fetched, run, now)
    except Exception as exc:  # any failure must end as a recorded, failed run
        log.exception("collection run %s failed while storing", run.pk)
        message = f"storing the pools failed, nothing was changed: {type(exc).__name__}: {exc}"
        return finish_failed(run, Condition(Kind.COLLECTION_FAILED, "one", message))
    run.hosts, run.vms = len(fetched.hosts), len(fetched.vms)
    run.new_samples, run.gone = stored.new_samples, stored.gone
    run.errors, run.fetch_seconds = len(stored.conditions), fetched.seconds
    run.detect_seconds, run.collect_seconds = stored.detect_seconds, time.monotonic() - started
    if finish:
        run.outcome, run.finished = CollectionRun.Outcome.OK, timezone.now()
    run.save()
    return run


def close_interrupted_runs() -> int:
    """Runs left 'running' by a process that died (SIGKILL, reboot) end as failed.

    Called under the cycle lock (idlevm.inventory.lock), so no other run is live.
    """
    return CollectionRun.objects.filter(outcome=CollectionRun.Outcome.RUNNING).update(
        outcome=CollectionRun.Outcome.FAILED,
        finished=timezone.now(),
        message="interrupted: the process ended before the cycle did",
    )


def finish_failed(run: CollectionRun, condition: Condition) -> CollectionRun:
    log.error("collection run %s failed: %s", run.pk, condition.message)
    with transaction.atomic():
        conditions.record([condition], timezone.now())
        run.outcome, run.finished = CollectionRun.Outcome.FAILED, timezone.now()
        run.message, run.errors = condition.message, 1
        run.save()
    return run


def store(fetched: Fetched, run: CollectionRun, now: datetime) -> Stored:
    stored = Stored()
    if fetched.seconds > settings.ONE_SLOW_SECONDS:
        message = (
            f"fetching the pools took {fetched.seconds:.1f} s "
            f"(ONE_SLOW_SECONDS={settings.ONE_SLOW_SECONDS})"
        )
        stored.conditions.append(Condition(Kind.ONE_SLOW, "one", message))
    # Ages and the future bound count from when the data arrived, not from the cycle start:
    # a long fetch must neither make fresh records look stale nor late ones look future.
    fetched_at = now + timedelta(seconds=fetched.seconds)
    store_hosts(fetched.hosts, run, now, stored)
    idle = resolve_idle(fetched.hosts, fetched.vms, fetched_at, stored)
    received = store_vms(fetched.vms, idle, run, now, stored)
    detect_started = time.monotonic()
    stored.conditions += vm_conditions(fetched.vms, received, fetched_at)
    conditions.record(stored.conditions, now)
    stored.detect_seconds = time.monotonic() - detect_started
    prune_samples(now)
    return stored


# --- hosts ---------------------------------------------------------------------------------

HOST_COLUMNS = [
    "id", "name", "state", "state_name", "cluster_id", "cluster", "total_cpu", "cpu_usage",
    "max_cpu", "total_mem", "mem_usage", "max_mem", "running_vms", "template", "first_seen",
    "last_seen", "last_seen_run", "gone_at",
]  # fmt: skip


def host_row(h: one.Host, run: CollectionRun, now: datetime) -> tuple[object, ...]:
    return (
        h.id, h.name, h.state, h.state_name, h.cluster_id, h.cluster, h.total_cpu, h.cpu_usage,
        h.max_cpu, h.total_mem, h.mem_usage, h.max_mem, h.running_vms, h.template, now, now,
        run.pk, None,
    )  # fmt: skip


def store_hosts(hosts: list[one.Host], run: CollectionRun, now: datetime, out: Stored) -> None:
    upsert(
        Host,
        HOST_COLUMNS,
        (host_row(h, run, now) for h in hosts),
        conflict=["id"],
        update=[c for c in HOST_COLUMNS if c not in ("id", "first_seen")],
    )
    Host.objects.filter(gone_at__isnull=True).exclude(last_seen_run=run.pk).update(gone_at=now)
    for h in hosts:
        if h.state in BAD_HOST_STATES:
            message = f"host {h.name} (#{h.id}) is in state {h.state_name}"
            out.conditions.append(Condition(Kind.HOST_STATE, f"host:{h.id}", message))


# --- idle data -----------------------------------------------------------------------------


def resolve_idle(
    hosts: list[one.Host], vms: list[one.VirtualMachine], fetched_at: datetime, out: Stored
) -> dict[int, one.IdleRecord]:
    """The record each VM's data comes from: the newer of its MONITORING and its host's IDLE.

    A host's IDLE entry for a VM that is not on that host is refused: a host only vouches
    for the VMs OpenNebula placed on it.
    """
    placed = {vm.id: vm.host_id for vm in vms}
    latest = int(fetched_at.timestamp()) + FUTURE_SKEW_SECONDS
    from_hosts: dict[int, one.IdleRecord] = {}
    for host in hosts:
        for problem in host.idle_problems:
            subject = f"vm:{problem.vm_id}" if problem.vm_id is not None else f"host:{host.id}"
            kind = Kind.IDLE_WRONG_HOST if problem.wrong_host else Kind.IDLE_MALFORMED
            message = f"IDLE attribute of host {host.name} (#{host.id}): {problem.reason}"
            out.conditions.append(Condition(kind, subject, message))
        for vm_id, host_rec in host.idle.items():
            if placed.get(vm_id, -1) == host.id:  # so at most one host speaks for a VM
                from_hosts[vm_id] = host_rec
                continue
            message = f"host {host.name} (#{host.id}) reports idle data for VM {vm_id}, "
            message += "which OpenNebula does not place on that host: ignored"
            out.conditions.append(Condition(Kind.IDLE_WRONG_HOST, f"vm:{vm_id}", message))
    chosen: dict[int, one.IdleRecord] = {}
    for vm in vms:
        for problem in vm.idle_problems:
            message = f"MONITORING of VM {vm.id}: {problem.reason}"
            out.conditions.append(Condition(Kind.IDLE_MALFORMED, f"vm:{vm.id}", message))
        usable: list[one.IdleRecord | None] = []
        for rec in (vm.idle, from_hosts.get(vm.id)):
            if rec is not None and rec.received > latest:
                # A record from the future would never go stale and win every comparison.
                message = f"idle data of VM {vm.id} was received in the future ({rec.received})"
                out.conditions.append(Condition(Kind.IDLE_MALFORMED, f"vm:{vm.id}", message))
                rec = None
            usable.append(rec)
        best = newest(*usable)
        if best is not None:
            chosen[vm.id] = best
    return chosen


# --- virtual machines ------------------------------------------------------------------------

# A VM row is these columns, plus IDLE_COLUMNS when its idle record is written.
VM_COLUMNS = [
    "id", "name", "uid", "owner", "gid", "group", "state", "state_name", "lcm_state",
    "lcm_state_name", "host_id", "host_name", "stime", "cpu", "vcpu", "memory", "user_template",
    "monitoring", "first_seen", "last_seen", "last_seen_run", "gone_at",
]  # fmt: skip
IDLE_COLUMNS = [
    "idle", "idle_since", "idle_seq", "idle_time", "idle_received", "idle_source", "cpu_pct",
    "steal_pct", "load", "disk_bps", "net_rx_bps", "net_tx_bps", "sessions", "input_age",
    "busy_procs", "gpu_pct", "idle_rejected",
]  # fmt: skip
# Stored when a new VM has no usable record.
NO_IDLE_VALUES = tuple(
    {"idle_source": "", "idle_rejected": 0}.get(column) for column in IDLE_COLUMNS
)

SAMPLE_COLUMNS = [
    "vm_id", "seq", "agent_time", "received", "idle", "idle_for", "cpu_pct", "steal_pct",
    "load", "disk_bps", "net_rx_bps", "net_tx_bps", "sessions", "busy_procs", "gpu_pct",
]  # fmt: skip


def idle_for(rec: one.IdleRecord) -> int | None:
    """Seconds idle at sample time, from the agent's own clock (so its offset cancels)."""
    if not rec.idle or rec.idle_since is None:
        return None
    return max(0, rec.time - rec.idle_since)


def idle_values(rec: one.IdleRecord) -> tuple[object, ...]:
    received = epoch(rec.received)
    seconds = idle_for(rec)
    since = received - timedelta(seconds=seconds) if received and seconds is not None else None
    return (
        rec.idle, since, rec.seq, rec.time, received, rec.source, rec.cpu, rec.steal, rec.load,
        rec.disk, rec.net_rx, rec.net_tx, rec.sessions, rec.input_age, rec.busy_procs, rec.gpu,
        rec.rejected,
    )  # fmt: skip


def vm_row(vm: one.VirtualMachine, run: CollectionRun, now: datetime) -> tuple[object, ...]:
    return (
        vm.id, vm.name, vm.uid, vm.uname, vm.gid, vm.gname, vm.state, vm.state_name,
        vm.lcm_state, vm.lcm_state_name, vm.host_id, vm.host_name or "", epoch(vm.stime),
        vm.cpu, vm.vcpu, vm.memory, vm.user_template, vm.monitoring, now, now, run.pk, None,
    )  # fmt: skip


def sample_row(vm_id: int, rec: one.IdleRecord) -> tuple[object, ...]:
    return (
        vm_id, rec.seq, rec.time, epoch(rec.received), rec.idle, idle_for(rec), rec.cpu,
        rec.steal, rec.load, rec.disk, rec.net_rx, rec.net_tx, rec.sessions, rec.busy_procs,
        rec.gpu,
    )  # fmt: skip


StoredIdle = tuple[int | None, int | None, datetime | None]  # seq, agent time, received


def is_new(rec: one.IdleRecord, stored: StoredIdle | None) -> bool:
    """Whether rec should replace the stored record: not the same one, and not older."""
    seq, agent_time, received = stored or (None, None, None)
    if received is None:
        return True
    if (rec.seq, rec.time) == (seq, agent_time):
        return False
    return (rec.received, rec.seq) > (received.timestamp(), seq or 0)


def store_vms(
    vms: list[one.VirtualMachine],
    idle: dict[int, one.IdleRecord],
    run: CollectionRun,
    now: datetime,
    out: Stored,
) -> dict[int, datetime | None]:
    """Upsert the VMs and append samples; returns each VM's idle receive time as stored.

    A VM keeps its stored record when this cycle brings none or an older one (the newer
    path vanished): its age keeps growing until it is stale, which is what operators and
    rules must see, rather than the data silently disappearing or going back in time.
    Such rows are upserted without the idle columns: the second statement costs less than
    reading every stored record back.
    """
    stored: dict[int, StoredIdle] = {
        vm_id: (seq, agent_time, received)
        for vm_id, seq, agent_time, received in VirtualMachine.objects.filter(
            gone_at__isnull=True
        ).values_list("id", "idle_seq", "idle_time", "idle_received")
    }
    with_idle, keeping, samples = [], [], []
    received: dict[int, datetime | None] = {}
    for vm in vms:
        rec, previous = idle.get(vm.id), stored.get(vm.id)
        if rec is not None and is_new(rec, previous):
            with_idle.append(vm_row(vm, run, now) + idle_values(rec))
            samples.append(sample_row(vm.id, rec))
            received[vm.id] = epoch(rec.received)
        elif previous is not None:
            keeping.append(vm_row(vm, run, now))
            received[vm.id] = previous[2]
        else:
            with_idle.append(vm_row(vm, run, now) + NO_IDLE_VALUES)
            received[vm.id] = None
    update = [c for c in VM_COLUMNS if c not in ("id", "first_seen")]
    upsert(VirtualMachine, VM_COLUMNS + IDLE_COLUMNS, with_idle, conflict=["id"],
           update=update + IDLE_COLUMNS)  # fmt: skip
    upsert(VirtualMachine, VM_COLUMNS, keeping, conflict=["id"], update=update)
    out.new_samples = upsert(
        IdleSample, SAMPLE_COLUMNS, samples, conflict=["vm_id", "agent_time", "seq"], update=[]
    )
    out.gone = (
        VirtualMachine.objects.filter(gone_at__isnull=True)
        .exclude(last_seen_run=run.pk)
        .update(gone_at=now)
    )
    return received


def vm_conditions(
    vms: list[one.VirtualMachine], received: dict[int, datetime | None], now: datetime
) -> list[Condition]:
    stale_after = timedelta(seconds=settings.IDLE_STALE_SECONDS)
    found: list[Condition] = []
    for vm in vms:
        subject = f"vm:{vm.id}"
        if is_failure(vm.state, vm.lcm_state):
            message = f"VM {vm.name} (#{vm.id}) is in state {vm.state_name}/{vm.lcm_state_name}"
            found.append(Condition(Kind.VM_FAILURE, subject, message))
        if (vm.state, vm.lcm_state) != (ACTIVE, RUNNING):
            continue
        last = received.get(vm.id)
        if last is None:
            started = epoch(vm.stime)
            # A VM that just booted has had no time to report: give it one stale period.
            if started is None or now - started > stale_after:
                message = f"running VM {vm.name} (#{vm.id}) on {vm.host_name} has no idle data"
                found.append(Condition(Kind.IDLE_MISSING, subject, message))
        elif now - last > stale_after:
            message = (
                f"idle data of running VM {vm.name} (#{vm.id}) is "
                f"{(now - last).total_seconds():.0f} s old "
                f"(IDLE_STALE_SECONDS={settings.IDLE_STALE_SECONDS})"
            )
            found.append(Condition(Kind.IDLE_STALE, subject, message))
    return found


def prune_samples(now: datetime) -> int:
    cutoff = now - timedelta(days=settings.IDLE_SAMPLE_RETENTION_DAYS)
    deleted, _ = IdleSample.objects.filter(received__lt=cutoff).delete()
    return deleted
