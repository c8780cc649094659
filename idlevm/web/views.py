"""The operators' console. For now one overview page; the web issue builds the rest."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from idlevm.inventory.models import CollectionRun, ErrorMessage, Host, VirtualMachine


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    live_vms = VirtualMachine.objects.filter(gone_at__isnull=True)
    # Stale data is missing data, never idleness (docs/protocol.md, "Staleness").
    fresh_since = timezone.now() - timedelta(seconds=settings.IDLE_STALE_SECONDS)
    context = {
        "hosts": Host.objects.filter(gone_at__isnull=True).order_by("name")[:200],
        "vm_states": live_vms.values("state_name", "lcm_state_name")
        .annotate(n=Count("id"))
        .order_by("-n"),
        "idle_vms": live_vms.filter(
            state_name="ACTIVE", lcm_state_name="RUNNING", idle=True, idle_received__gte=fresh_since
        ).count(),
        "runs": CollectionRun.objects.all()[:10],
        "errors": ErrorMessage.objects.filter(cleared=False)[:50],
    }
    return render(request, "web/overview.html", context)
