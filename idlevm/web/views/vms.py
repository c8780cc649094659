"""VMs: the list (filters, search, sorting, pages), a VM's page, and its idle-history chart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_safe

from idlevm.inventory.models import ErrorMessage, Host, IdleSample, VirtualMachine
from idlevm.rules.cycle import context
from idlevm.rules.functions import local_zone
from idlevm.rules.models import ActionRecord, Rule
from idlevm.web import vmlist, vmrules
from idlevm.web.charts import HEIGHT, Frame, Sample, render_chart

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
ACTIONS_SHOWN = 20


# --- the list -----------------------------------------------------------------------------------


@login_required
@require_safe
def vm_list(request: HttpRequest) -> HttpResponse:
    ctx = context()
    form = vmlist.VmFilters(request.GET)
    rules = list(Rule.objects.all())
    hosts = list(Host.objects.order_by("name", "id").values_list("id", "name"))
    states = vmlist.state_options(
        VirtualMachine.objects.order_by().values_list("state", "lcm_state").distinct()
    )
    page_context: dict[str, Any] = {
        "section": "vms", "form": form, "now": ctx.now,
        "selects": vmlist.selects(form, hosts, rules, states),
        "stale_seconds": ctx.stale_after.total_seconds(),
    }  # fmt: skip
    rule = None
    if form.is_valid() and form.cleaned_data["rule"]:
        rule = next((r for r in rules if r.pk == form.cleaned_data["rule"]), None)
        if rule is None:
            form.add_error("rule", f"there is no rule #{form.cleaned_data['rule']}")
    if form.errors:  # a hand-made or outdated URL: say what is wrong rather than guess
        return render(request, "web/vms/list.html", page_context, status=400)
    data = form.cleaned_data
    sort = data["sort"] or "id"
    vms = vmlist.filtered(data, ctx)
    objects: Any = vms.only(*vmlist.ROW_COLUMNS)
    if rule is not None:  # a Python filter: the matching ids, then one page of rows
        found = vmrules.rule_filter(rule, vms, ctx)
        page_context["rule_found"] = found
        objects = found.matched
    paginator = Paginator(objects, data["per"] or vmlist.DEFAULT_PER_PAGE)
    # Past the last page (the list shrank since the link was made): the last one is shown.
    page = paginator.page(min(data["page"] or 1, paginator.num_pages))
    on_page = list(page.object_list)
    if rule is not None:
        on_page = vmlist.rows_by_id(on_page)
    narrow = vmlist.Narrow(request.GET)
    page_context.update(
        page=page, rows=[vmlist.row(vm, ctx, narrow) for vm in on_page], sort=sort,
        headers=vmlist.headers(sort), total=paginator.count,
        page_numbers=vmlist.page_numbers(page.number, paginator.num_pages),
        filtered=vmlist.is_filtered(data),
    )  # fmt: skip
    return render(request, "web/vms/list.html", page_context)


# --- one VM -------------------------------------------------------------------------------------


@login_required
@require_safe
def vm_detail(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine, pk=vm_id)
    ctx = context()
    chart_range = request.GET.get("range", "24h")
    if chart_range not in RANGES:  # only chooses the chart shown: fall back quietly
        chart_range = "24h"
    actions = list(ActionRecord.objects.filter(vm_id=vm.id)[: ACTIONS_SHOWN + 1])
    page_context = {
        "section": "vms", "vm": vm, "now": ctx.now,
        "row": vmlist.row(vm, ctx, vmlist.Narrow(QueryDict())),
        "stale_after": ctx.stale_after.total_seconds(), "chart_range": chart_range,
        "ranges": list(RANGES), "chart_height": HEIGHT, "verdicts": vmrules.explain_rules(vm, ctx),
        "global_dry_run": settings.RULES_DRY_RUN, "actions": actions[:ACTIONS_SHOWN],
        "more_actions": len(actions) > ACTIONS_SHOWN,
        "errors": ErrorMessage.objects.filter(subject=f"vm:{vm.id}", cleared=False),
        "user_template": sorted((vm.user_template or {}).items()),
        "monitoring": sorted((vm.monitoring or {}).items()),
    }  # fmt: skip
    return render(request, "web/vms/detail.html", page_context)


# --- the chart ----------------------------------------------------------------------------------

SAMPLE_COLUMNS = ("received", "idle", "cpu_pct", "load", "disk_bps", "net_rx_bps", "net_tx_bps")


@login_required
@require_safe
def vm_chart(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = get_object_or_404(VirtualMachine.objects.only("id", "name"), pk=vm_id)
    name = request.GET.get("range", "24h")
    span = RANGES.get(name)
    if span is None:
        return HttpResponse(
            f"range must be one of {', '.join(RANGES)}", status=400, content_type="text/plain"
        )
    now = timezone.now()
    rows = IdleSample.objects.filter(vm_id=vm.id, received__gte=now - span).order_by("received")
    samples: list[Sample] = [
        (received.timestamp(), *rest)
        for received, *rest in rows.values_list(*SAMPLE_COLUMNS).iterator(chunk_size=5000)
    ]
    frame = Frame(
        start=(now - span).timestamp(), end=now.timestamp(), zone=local_zone(),
        gap=float(settings.IDLE_STALE_SECONDS),
    )  # fmt: skip
    label = "last 24 h" if name == "24h" else "last 7 days"
    title = f"{vm.name} (#{vm.id}): {label}, {len(samples)} samples, times in {settings.TIME_ZONE}"
    response = HttpResponse(render_chart(samples, frame, title), content_type="image/svg+xml")
    # An SVG opened on its own is a document: it may run nothing and load nothing.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=60"
    return response
