"""Action history: ActionRecord filtered by rule, VM, owner, action, outcome, dry run and
date range, as pages or as one streamed CSV of every matching record.

Dates are days in the operator's time zone (the current one); the CSV's times are UTC.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from idlevm.rules.actions import ACTIONS
from idlevm.rules.models import ActionRecord, Rule
from idlevm.web.params import DATE_VALIDATORS, parse_id

PER_PAGE = 50
CSV_BATCH = 1000  # rows per chunk sent: one write per row would be slow, all rows big
YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]


class ActionFilter(forms.Form):
    rule = forms.CharField(
        required=False, max_length=100,
        widget=forms.TextInput(attrs={"list": "rule-names", "placeholder": "id or name"}),
    )  # fmt: skip
    vm = forms.IntegerField(
        label="VM id", required=False, min_value=0, max_value=10**18,
        widget=forms.NumberInput(attrs={"size": 6}),
    )  # fmt: skip
    owner = forms.CharField(required=False, max_length=255)
    action = forms.ChoiceField(choices=[("", "any"), *((a, a) for a in ACTIONS)], required=False)
    outcome = forms.ChoiceField(
        choices=[("", "any"), *ActionRecord.Outcome.choices], required=False
    )
    dry_run = forms.ChoiceField(label="dry run", choices=YES_NO, required=False)
    since = forms.DateField(
        label="from", required=False, validators=DATE_VALIDATORS,
        widget=forms.DateInput(attrs={"type": "date"}),
    )  # fmt: skip
    until = forms.DateField(
        label="to", required=False, validators=DATE_VALIDATORS,
        widget=forms.DateInput(attrs={"type": "date"}),
    )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "The end is before the start.")
        return data


def day_start(day: date) -> datetime:
    """Midnight at the start of `day` in the operator's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def rule_q(value: str) -> Q:
    """A rule by id (records keep it while the rule exists) or by its name at the time."""
    value = value.strip()
    by_name = Q(rule_name=value)
    rule_id = parse_id(value)
    return by_name if rule_id is None else by_name | Q(rule_id=rule_id)


def filtered(data: dict[str, Any]) -> QuerySet[ActionRecord]:
    """Records matching the form's valid fields, newest first."""
    records = ActionRecord.objects.all()
    if data.get("rule"):
        records = records.filter(rule_q(data["rule"]))
    if data.get("vm") is not None:
        records = records.filter(vm_id=data["vm"])
    if data.get("owner"):
        records = records.filter(vm_owner=data["owner"].strip())
    if data.get("action"):
        records = records.filter(action=data["action"])
    if data.get("outcome"):
        records = records.filter(outcome=data["outcome"])
    if data.get("dry_run"):
        records = records.filter(dry_run=data["dry_run"] == "yes")
    if data.get("since"):
        records = records.filter(time__gte=day_start(data["since"]))
    if data.get("until"):  # the whole of the last day
        records = records.filter(time__lt=day_start(data["until"] + timedelta(days=1)))
    return records.order_by("-time", "-id")


@login_required
@require_safe
def action_list(request: HttpRequest) -> HttpResponse:
    form = ActionFilter(request.GET)
    form.is_valid()  # an invalid field is left out (its error shown), the others still filter
    page = Paginator(filtered(form.cleaned_data), PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "section": "actions",
        "form": form,
        "page": page,
        "rule_names": Rule.objects.order_by("name").values_list("name", flat=True),
        "tz_name": timezone.get_current_timezone_name(),
    }
    return render(request, "web/actions/list.html", context)


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection): VM
# names, owners and OpenNebula's messages are not ours to trust.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def utc(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"


def flag(value: bool) -> str:
    return "true" if value else "false"


def number(value: int | None) -> int | str:
    return "" if value is None else value


def text(value: str | None) -> str:
    value = value or ""
    return "'" + value if value.startswith(FORMULA_START) else value


# The CSV's columns: header -> (ActionRecord field, its cell). One converter per column,
# not a type test per cell: 100k rows x 19 cells.
CSV_COLUMNS: dict[str, tuple[str | Cast, Callable[[Any], Any]]] = {
    "time": ("time", utc), "finished": ("finished", utc), "id": ("id", number),
    "run": ("run_id", number), "rule_id": ("rule_id", number), "rule": ("rule_name", text),
    "expression": ("rule_expression", text), "vm_id": ("vm_id", number),
    "vm_name": ("vm_name", text), "owner": ("vm_owner", text), "group": ("vm_group", text),
    "host": ("vm_host", text), "action": ("action", text), "dry_run": ("dry_run", flag),
    "outcome": ("outcome", text), "message": ("message", text),
    "state_before": ("state_before", text), "state_after": ("state_after", text),
    # The stored JSON text as it is: decoding and encoding it again would double the time.
    "evidence": (Cast("evidence", TextField()), text),
}  # fmt: skip


def csv_chunks(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    """The header, then the rows in chunks of CSV_BATCH: memory stays flat at any size."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cells = [cell for _, cell in CSV_COLUMNS.values()]
    for n, row in enumerate(rows, 1):
        writer.writerow([cell(v) for cell, v in zip(cells, row, strict=True)])
        if n % CSV_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@login_required
@require_safe
def action_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = ActionFilter(request.GET)
    if not form.is_valid():  # never export everything because a filter was mistyped
        errors = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items())
        return HttpResponseBadRequest(f"invalid filter: {errors}", content_type="text/plain")
    rows = filtered(form.cleaned_data).values_list(*(field for field, _ in CSV_COLUMNS.values()))
    response = StreamingHttpResponse(
        csv_chunks(rows.iterator(chunk_size=CSV_BATCH)), content_type="text/csv; charset=utf-8"
    )
    today = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="idlevm-actions-{today}.csv"'
    return response
