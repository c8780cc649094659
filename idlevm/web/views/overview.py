"""The overview: what is idle, what idlevm did, what is broken, at a glance.

A fixed handful of queries whatever the size of the cloud: every figure is a grouped count
or an aggregate, and only the latest few errors and cycles are read as rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from idlevm.inventory.models import CollectionRun, ErrorMessage, Host, VirtualMachine
from idlevm.rules import cycle
from idlevm.rules.fields import Context
from idlevm.rules.models import ActionRecord
from idlevm.web.vmlist import fresh_q

# Without a cycle for this many intervals, the service is reported as not running: one
# missed cycle is normal jitter (cron, a slow OpenNebula), three are not.
LATE_INTERVALS = 3
LATEST_ERRORS = 5
LATEST_RUNS = 10
BAD_HOST_STATES = ("ERROR", "OFFLINE")

Outcome = ActionRecord.Outcome
# The outcome cards, in display order; dry run ("would") is shown apart. Not the engine's
# REAL_OUTCOMES (those that start a cooldown): a skipped action is shown here too.
SHOWN_OUTCOMES = (Outcome.DONE, Outcome.FAILED, Outcome.SKIPPED, Outcome.PENDING,
                 Outcome.INTERRUPTED)  # fmt: skip
OUTCOME_CLASS = {
    Outcome.DONE: "ok", Outcome.FAILED: "bad", Outcome.INTERRUPTED: "bad",
    Outcome.PENDING: "warn", Outcome.SKIPPED: "muted", Outcome.WOULD: "idle",
}  # fmt: skip


def running_q() -> Q:
    """ACTIVE/RUNNING, as collection and the rules count running VMs."""
    return Q(state_name="ACTIVE", lcm_state_name="RUNNING")


def idle_now_q(ctx: Context) -> Q:
    """Running with fresh data saying idle (the VM list's and the rules' definition)."""
    return running_q() & fresh_q(ctx) & Q(idle=True)


def unknown_q(ctx: Context) -> Q:
    """Running without fresh idle data: neither idle nor busy."""
    return running_q() & ~(fresh_q(ctx) & Q(idle__isnull=False))


def gib(mib: float | None) -> str:
    """MiB as GiB for people ("12.5 GiB")."""
    return f"{(mib or 0) / 1024:.1f} GiB"


@dataclass(frozen=True)
class StateCount:
    label: str
    n: int
    bad: bool = False
    query: str = ""  # the VM list's filter for this state


@dataclass(frozen=True)
class OutcomeCount:
    outcome: str
    label: str
    n: int
    css: str
    url: str


@dataclass(frozen=True)
class RunRow:
    run: CollectionRun
    seconds: float | None
    actions: str


def host_states() -> list[StateCount]:
    rows = (
        Host.objects.filter(gone_at__isnull=True)
        .values("state_name")
        .annotate(n=Count("id"))
        .order_by("state_name")
    )
    return [StateCount(r["state_name"], r["n"], r["state_name"] in BAD_HOST_STATES) for r in rows]


def vm_summary(ctx: Context) -> tuple[list[StateCount], dict[str, Any]]:
    """VMs by state; running VMs, those idle now and what they hold (what could be
    reclaimed), and those without fresh data (unknown: neither idle nor busy).

    One scan of the VM table for both (a wide table: on SQLite each scan costs).
    """
    idle = idle_now_q(ctx)
    rows = list(
        VirtualMachine.objects.filter(gone_at__isnull=True)
        .values("state_name", "lcm_state_name")
        .annotate(
            n=Count("id"),
            idle_vms=Count("id", filter=idle),
            idle_vcpu=Sum("vcpu", filter=idle),
            idle_cpu=Sum("cpu", filter=idle),
            idle_memory=Sum("memory", filter=idle),
            unknown=Count("id", filter=unknown_q(ctx)),
        )
        .order_by("-n", "state_name", "lcm_state_name")
    )
    states = [vm_state(r["state_name"], r["lcm_state_name"], r["n"]) for r in rows]
    figures: dict[str, Any] = {
        key: sum(r[key] or 0 for r in rows)
        for key in ("idle_vms", "idle_vcpu", "idle_cpu", "idle_memory", "unknown")
    }
    figures["running"] = sum(r["n"] for r in rows if r["state_name"] == "ACTIVE"
                             and r["lcm_state_name"] == "RUNNING")  # fmt: skip
    figures["idle_memory_text"] = gib(figures["idle_memory"])
    return states, figures


def vm_state(state: str, lcm_state: str, n: int) -> StateCount:
    # The LCM state only means something for ACTIVE VMs (it is LCM_INIT otherwise). The
    # label is also the VM list's `state` filter.
    label = f"{state}/{lcm_state}" if state == "ACTIVE" else state
    bad = "FAILURE" in state or "FAILURE" in lcm_state or lcm_state == "UNKNOWN"
    return StateCount(label, n, bad, urlencode({"state": label}, safe="/"))


def actions_url(outcome: str, since: datetime) -> str:
    """The action history filtered to one outcome from the day of `since` (its filter takes
    dates: the list starts at local midnight, a little more than the cards count)."""
    query = {"outcome": outcome, "since": timezone.localtime(since).date().isoformat()}
    return f"{reverse('web:actions')}?{urlencode(query)}"


def actions_last_day(now: datetime) -> tuple[list[OutcomeCount], OutcomeCount]:
    """Real actions by outcome (every outcome shown, zeros too) and dry-run ones apart."""
    since = now - timedelta(hours=24)
    counts = dict(
        ActionRecord.objects.filter(time__gte=since)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .order_by()
    )

    def count(outcome: Any) -> OutcomeCount:
        return OutcomeCount(outcome.value, str(outcome.label).lower(), counts.get(outcome.value, 0),
                            OUTCOME_CLASS[outcome], actions_url(outcome.value, since))  # fmt: skip

    return [count(o) for o in SHOWN_OUTCOMES], count(Outcome.WOULD)


def run_seconds(run: CollectionRun) -> float | None:
    duration = run.duration
    return None if duration is None else duration.total_seconds()


def run_rows(runs: list[CollectionRun]) -> list[RunRow]:
    def actions(run: CollectionRun) -> str:
        counts = run.actions if isinstance(run.actions, dict) else {}
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)

    return [RunRow(run, run_seconds(run), actions(run)) for run in runs]


def service_health(runs: list[CollectionRun], now: datetime) -> dict[str, Any]:
    """Whether the service runs: never ran, late (no cycle started for LATE_INTERVALS
    intervals), last cycle failed; and the last successful cycle among those read."""
    interval = timedelta(seconds=settings.SUSPEND_SERVICE_INTERVAL)
    last = runs[0] if runs else None
    return {
        "last_run": last,
        "last_ok": next((r for r in runs if r.outcome == CollectionRun.Outcome.OK), None),
        "never_ran": last is None,
        "late": last is not None and now - last.started > LATE_INTERVALS * interval,
        "failed": last is not None and last.outcome == CollectionRun.Outcome.FAILED,
        "interval_seconds": settings.SUSPEND_SERVICE_INTERVAL,
        "late_seconds": LATE_INTERVALS * settings.SUSPEND_SERVICE_INTERVAL,
    }


@login_required
@require_safe
def overview(request: HttpRequest) -> HttpResponse:
    ctx = cycle.context()
    now = ctx.now
    runs = list(CollectionRun.objects.all()[:LATEST_RUNS])
    open_errors = ErrorMessage.objects.filter(cleared=False)
    hosts = host_states()
    vms, figures = vm_summary(ctx)
    actions, would = actions_last_day(now)
    context = {
        "section": "overview",
        "host_states": hosts,
        "hosts_total": sum(s.n for s in hosts),
        "hosts_bad": sum(s.n for s in hosts if s.bad),
        "vm_states": vms,
        "vms_total": sum(s.n for s in vms),
        "vms": figures,
        "actions": actions,
        "actions_total": sum(a.n for a in actions),
        "would": would,
        "errors_open": open_errors.count(),
        "errors": list(open_errors[:LATEST_ERRORS]),
        "runs": run_rows(runs),
        "stale_seconds": settings.IDLE_STALE_SECONDS,
        **service_health(runs, now),
    }
    return render(request, "web/overview.html", context)
