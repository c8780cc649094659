"""Hosts: the list (state, VMs, allocation, idle VMs, data freshness) and one host's page.

VMs have no foreign key to their host (a host may be gone from OpenNebula), so the per-host
VM figures are one grouped aggregate over `VirtualMachine.host_id`, merged into the host
rows in Python: two queries for the list however many hosts there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from idlevm.inventory.models import ErrorMessage, Host, VirtualMachine
from idlevm.rules import cycle
from idlevm.rules.fields import FIELDS, Context
from idlevm.web.views.overview import BAD_HOST_STATES, gib, idle_now_q, running_q, unknown_q

# VM states that keep a VM on its host (OpenNebula keeps their resources allocated there);
# STOPPED, UNDEPLOYED and DONE VMs only remember the host they last ran on.
ON_HOST_STATES = ("ACTIVE", "POWEROFF", "SUSPENDED")
# What the host's VM table reads (not the templates and monitoring, which can be large).
VM_ROW_COLUMNS = ("id", "name", "owner", "state_name", "lcm_state_name", "idle", "idle_since",
                  "idle_received", "cpu_pct")  # fmt: skip
# A host's page lists this many of its VMs; the VM list (filtered by host) has them all.
HOST_VMS_SHOWN = 500


@dataclass(frozen=True)
class Usage:
    used: float
    capacity: float
    text: str

    @property
    def percent(self) -> float | None:
        # Not capped: OpenNebula may overcommit a host (the meter shows full, the text more).
        return None if self.capacity <= 0 else 100.0 * self.used / self.capacity

    # Formatted here rather than with template filters: the list renders hundreds of them.
    @property
    def meter(self) -> str:
        return f"{min(self.percent or 0.0, 100.0):.1f}"

    @property
    def percent_text(self) -> str:
        return f"{self.percent or 0.0:.0f}%"


@dataclass(frozen=True)
class HostRow:
    host: Host
    url: str
    bad: bool
    cpu: Usage
    memory: Usage
    vms: dict[str, Any]

    @property
    def usages(self) -> tuple[Usage, Usage]:
        return self.cpu, self.memory


@dataclass(frozen=True)
class VmRow:
    vm: VirtualMachine
    url: str
    running: bool
    fresh: bool
    idle_for: float | None  # seconds, when idle with fresh data
    stale: bool  # has data, but too old to count


def cpu_usage(host: Host) -> Usage:
    """Allocated CPU (OpenNebula's CPU_USAGE, 100 per CPU) of the host's capacity."""
    used, cap = host.cpu_usage / 100, host.max_cpu / 100
    return Usage(used, cap, f"{used:g} / {cap:g} CPU")


def memory_usage(host: Host) -> Usage:
    """Allocated memory (MEM_USAGE, KiB) of the host's capacity."""
    used, cap = host.mem_usage / 1024, host.max_mem / 1024
    return Usage(used, cap, f"{gib(used)} / {gib(cap)}")


def vm_figures(vms: QuerySet[VirtualMachine], ctx: Context) -> QuerySet[Any]:
    """Per host: VMs on it, running, idle now (and what they hold), running without fresh
    data, and the newest idle record of its VMs."""
    idle = idle_now_q(ctx)
    return (
        vms.filter(gone_at__isnull=True, state_name__in=ON_HOST_STATES)
        .values("host_id")
        .annotate(
            total=Count("id"),
            running=Count("id", filter=running_q()),
            idle_vms=Count("id", filter=idle),
            idle_vcpu=Sum("vcpu", filter=idle),
            idle_memory=Sum("memory", filter=idle),
            unknown=Count("id", filter=unknown_q(ctx)),
            newest=Max("idle_received"),
        )
        .order_by()
    )


NO_VMS: dict[str, Any] = {"total": 0, "running": 0, "idle_vms": 0, "idle_vcpu": None,
                          "idle_memory": None, "unknown": 0, "newest": None}  # fmt: skip


def host_row(host: Host, figures: dict[str, Any] | None) -> HostRow:
    vms = dict(figures or NO_VMS)
    vms["idle_memory_text"] = gib(vms["idle_memory"])
    bad = host.state_name in BAD_HOST_STATES
    url = reverse("web:host", args=[host.id])
    return HostRow(host, url, bad, cpu_usage(host), memory_usage(host), vms)


def freshness_context(ctx: Context) -> dict[str, Any]:
    return {"stale_before": ctx.now - ctx.stale_after,
            "stale_seconds": ctx.stale_after.total_seconds()}  # fmt: skip


@login_required
@require_safe
def host_list(request: HttpRequest) -> HttpResponse:
    ctx = cycle.context()
    hosts = list(Host.objects.filter(gone_at__isnull=True).order_by("name", "id"))
    figures = {f["host_id"]: f for f in vm_figures(VirtualMachine.objects.all(), ctx)}
    rows = [host_row(h, figures.get(h.id)) for h in hosts]
    context = {
        "section": "hosts",
        "rows": rows,
        "vms_url": reverse("web:vms"),
        **freshness_context(ctx),
    }
    return render(request, "web/hosts/list.html", context)


def vm_row(vm: VirtualMachine, ctx: Context) -> VmRow:
    """Freshness as the rules and the VM list define it: data from a host clock too far
    ahead is not fresh (shown as stale), not idle."""
    running = vm.state_name == "ACTIVE" and vm.lcm_state_name == "RUNNING"
    fresh = ctx.fresh(vm)
    stretch = FIELDS["idle_for"].get(vm, ctx)  # the rules' idle_for (0 when busy): idle only
    idle_for = stretch.total_seconds() if vm.idle and isinstance(stretch, timedelta) else None
    url = reverse("web:vm", args=[vm.id])
    return VmRow(vm, url, running, fresh, idle_for, vm.idle_received is not None and not fresh)


@login_required
@require_safe
def host_detail(request: HttpRequest, host_id: int) -> HttpResponse:
    ctx = cycle.context()
    host = get_object_or_404(Host, pk=host_id)
    on_host = VirtualMachine.objects.filter(host_id=host.id)
    figures = next(iter(vm_figures(on_host, ctx)), None)
    vms = list(
        on_host.filter(gone_at__isnull=True, state_name__in=ON_HOST_STATES)
        .only(*VM_ROW_COLUMNS)
        .order_by("id")[:HOST_VMS_SHOWN]
    )
    errors = ErrorMessage.objects.filter(subject=f"host:{host.id}", cleared=False)
    context = {
        "section": "hosts",
        "row": host_row(host, figures),
        "host": host,
        "template": sorted(host.template.items()) if isinstance(host.template, dict) else [],
        "vms": [vm_row(vm, ctx) for vm in vms],
        "errors": list(errors),
        **freshness_context(ctx),
    }
    return render(request, "web/hosts/detail.html", context)
