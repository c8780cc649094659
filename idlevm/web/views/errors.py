"""Errors: the list (open, cleared, all; by kind; by subject) and one error with its history.

Operators (EDIT_ERRORS) edit an error's text and note, clear and reopen it; each change is
an ErrorEvent with who did it. The service adds "seen again" events when a cleared error
recurs (idlevm/inventory/conditions.py). State changes are POST only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from idlevm.inventory.conditions import MAX_MESSAGE
from idlevm.inventory.models import ErrorEvent, ErrorMessage
from idlevm.web.permissions import EDIT_ERRORS, can_edit_errors, operator_required

PER_PAGE = 50
MAX_NOTE = 4000
# Subject prefix -> the page of what the error is about.
SUBJECT_PAGES = {"vm": "web:vm", "host": "web:host", "rule": "web:rule"}
# An object id in a subject: ASCII digits only (str.isdigit accepts "²", which int() refuses),
# and few enough to fit the database's bigint.
SUBJECT_ID = re.compile(r"[0-9]{1,18}")
STATUSES = {"open": Q(cleared=False), "cleared": Q(cleared=True), "all": Q()}


class ErrorFilter(forms.Form):
    status = forms.ChoiceField(
        choices=[(s, s) for s in STATUSES], required=False, widget=forms.HiddenInput
    )
    kind = forms.ChoiceField(choices=[("", "any kind"), *ErrorMessage.Kind.choices], required=False)
    q = forms.CharField(
        label="subject", required=False, max_length=64,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "vm:42, host:3, rule:7"}),
    )  # fmt: skip


class ErrorEdit(forms.Form):
    message = forms.CharField(
        max_length=MAX_MESSAGE, widget=forms.Textarea(attrs={"rows": 4}), strip=True
    )
    note = forms.CharField(
        max_length=MAX_NOTE, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    # Browsers send CRLF line ends: an unchanged text must compare equal to the stored one.
    def clean_message(self) -> str:
        return str(self.cleaned_data["message"]).replace("\r\n", "\n")

    def clean_note(self) -> str:
        return str(self.cleaned_data["note"]).replace("\r\n", "\n")


@dataclass(frozen=True)
class ErrorRow:
    error: ErrorMessage
    subject_url: str | None


def subject_url(subject: str) -> str | None:
    """The console page of an error's subject ("vm:42" -> /vms/42/), None for "one" etc."""
    prefix, _, ident = subject.partition(":")
    name = SUBJECT_PAGES.get(prefix)
    if name is None or not SUBJECT_ID.fullmatch(ident):
        return None
    try:
        return reverse(name, args=[int(ident)])
    except NoReverseMatch:
        return None


def filtered(data: dict[str, str]) -> QuerySet[ErrorMessage]:
    """Errors by kind and subject (not by status: the tabs count each status)."""
    errors = ErrorMessage.objects.all()
    if data.get("kind"):
        errors = errors.filter(kind=data["kind"])
    q = (data.get("q") or "").strip()
    if subject_url(q) or q in ("one", "service"):  # a whole subject: vm:2 is not vm:20
        errors = errors.filter(subject=q)
    elif q:
        errors = errors.filter(subject__icontains=q)
    return errors


@login_required
def error_list(request: HttpRequest) -> HttpResponse:
    form = ErrorFilter(request.GET)
    form.is_valid()  # an invalid field is left out (its error shown), the others still filter
    data = form.cleaned_data
    status = data.get("status") or "open"
    errors = filtered(data)
    counts = errors.aggregate(
        open=Count("id", filter=STATUSES["open"]), cleared=Count("id", filter=STATUSES["cleared"])
    )
    counts["all"] = counts["open"] + counts["cleared"]
    page = Paginator(errors.filter(STATUSES[status]).order_by("-modified", "-id"), PER_PAGE)
    page_obj = page.get_page(request.GET.get("page"))
    context = {
        "section": "errors",
        "form": form,
        "status": status,
        "tabs": [(s, counts[s]) for s in STATUSES],
        "page": page_obj,
        "rows": [ErrorRow(e, subject_url(e.subject)) for e in page_obj],
        "can_edit": can_edit_errors(request),
    }
    return render(request, "web/errors/list.html", context)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def error_detail(request: HttpRequest, error_id: int) -> HttpResponse:
    error = get_object_or_404(ErrorMessage, pk=error_id)
    can_edit = can_edit_errors(request)
    form = None
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        form = ErrorEdit(request.POST)
        if form.is_valid():
            changed = save_edit(error_id, form.cleaned_data, request)
            messages.success(request, "Saved." if changed else "Nothing changed.")
            return redirect("web:error", error_id)
    elif can_edit:
        form = ErrorEdit(initial={"message": error.message, "note": error.note})
    context = {
        "section": "errors",
        "error": error,
        "subject_url": subject_url(error.subject),
        "events": list(error.events.all()),
        "form": form,
        "can_edit": can_edit,
    }
    return render(
        request, "web/errors/detail.html", context, status=400 if form and form.errors else 200
    )


def save_edit(error_id: int, data: dict[str, str], request: HttpRequest) -> bool:
    """Store the new text and note with an "edited" event; False when nothing changed.

    Only message and note are written: count, modified and cleared belong to the service,
    which may have moved them since the form was shown.
    """
    with transaction.atomic():
        error = ErrorMessage.objects.select_for_update().get(pk=error_id)
        message, note = data["message"], data["note"]
        if (message, note) == (error.message, error.note):
            return False
        ErrorMessage.objects.filter(pk=error_id).update(message=message, note=note)
        add_event(error, ErrorEvent.Kind.EDITED, request, message=message, note=note)
    return True


def add_event(
    error: ErrorMessage,
    kind: str,
    request: HttpRequest,
    message: str | None = None,
    note: str | None = None,
    time: datetime | None = None,
) -> None:
    user = request.user if request.user.is_authenticated else None
    ErrorEvent.objects.create(
        error=error, time=time or timezone.now(), kind=kind, user=user,
        username=user.get_username() if user else "",
        message_before=error.message, message_after=error.message if message is None else message,
        note_before=error.note, note_after=error.note if note is None else note,
    )  # fmt: skip


@operator_required(EDIT_ERRORS)  # includes login_required
@require_POST
def error_clear(request: HttpRequest, error_id: int) -> HttpResponse:
    changed = set_cleared(request, error_id, cleared=True)
    messages.success(request, "Cleared." if changed else "It was already cleared.")
    return back(request, error_id)


@operator_required(EDIT_ERRORS)  # includes login_required
@require_POST
def error_reopen(request: HttpRequest, error_id: int) -> HttpResponse:
    changed = set_cleared(request, error_id, cleared=False)
    messages.success(request, "Reopened." if changed else "It was already open.")
    return back(request, error_id)


def set_cleared(request: HttpRequest, error_id: int, cleared: bool) -> bool:
    """Clear or reopen, with its event; False when it already was (a double submit, or the
    service reopened it meanwhile): nothing is written then."""
    with transaction.atomic():
        # Locked: the event's snapshot is the text as it is when the state changes.
        error = get_object_or_404(ErrorMessage.objects.select_for_update(), pk=error_id)
        now = timezone.now()  # the event's time is cleared_at: "seen again" is never before it
        # Conditional on the current state, so a concurrent change is never overwritten.
        changed = ErrorMessage.objects.filter(pk=error_id, cleared=not cleared).update(
            cleared=cleared, cleared_at=now if cleared else None
        )
        if changed:
            kind = ErrorEvent.Kind.CLEARED if cleared else ErrorEvent.Kind.REOPENED
            add_event(error, kind, request, time=now)
    return bool(changed)


def back(request: HttpRequest, error_id: int) -> HttpResponse:
    """To `next` (the list the button was on) when it is a page of this site, else the error."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return redirect("web:error", error_id)
