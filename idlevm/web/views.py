"""The operators' console. For now one overview page; the web issue builds the rest."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from idlevm.inventory.models import CollectionRun, ErrorMessage, Host, VirtualMachine


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    live_vms = VirtualMachine.objects.filter(gone_at__isnull=True)
    context = {
        "hosts": Host.objects.filter(gone_at__isnull=True).order_by("name")[:200],
        "vm_states": live_vms.values("state_name", "lcm_state_name")
        .annotate(n=Count("id"))
        .order_by("-n"),
        "idle_vms": live_vms.filter(idle=True).count(),
        "runs": CollectionRun.objects.all()[:10],
        "errors": ErrorMessage.objects.filter(cleared=False)[:50],
    }
    return render(request, "web/overview.html", context)
