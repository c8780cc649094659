"""Rules: list, create, edit (with a preview), delete, the field reference, and each rule's
change history. Reading needs a login; changing needs the operators' rule permissions.

Every change is recorded (RuleChange, idlevm/rules/history.py) in the transaction that
makes it. A preview (a POST with `preview`, or GET `?preview=1` for the saved rule) runs the
engine on the rule as edited and records nothing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_http_methods, require_safe

from idlevm.inventory.models import CollectionRun
from idlevm.rules.history import changed_fields, record_change, snapshot
from idlevm.rules.models import ActionRecord, Rule, RuleChange
from idlevm.rules.reference import reference_markdown
from idlevm.rules.rulefile import format_duration
from idlevm.rules.validation import rule_problems
from idlevm.web.permissions import EDIT_RULES, can_edit_rules, operator_required
from idlevm.web.preview import Preview, timed
from idlevm.web.ruleforms import RuleForm

HISTORY_SHOWN = 200
# Counters of Rule.last_cycle (RuleResult.summary) worth a word when not zero.
EXCLUDED = [("wrong_state", "wrong state"), ("exempt", "exempt"), ("cooling", "cooling"),
            ("claimed", "claimed by earlier rule"), ("failed", "failed")]  # fmt: skip


# --- list ---------------------------------------------------------------------------------


@login_required
@require_safe
def rule_list(request: HttpRequest) -> HttpResponse:
    rows = [
        {"rule": r, "scope": scope_text(r), "last": last_cycle(r.last_cycle)}
        for r in Rule.objects.all()
    ]
    context = {
        "section": "rules",
        "rows": rows,
        "last_run": CollectionRun.objects.filter(evaluate_seconds__isnull=False).first(),
        "deleted": RuleChange.objects.filter(kind=RuleChange.Kind.DELETED)[:10],
        "can_edit": can_edit_rules(request),
    }
    return render(request, "web/rules/list.html", context)


def scope_text(rule: Rule) -> str:
    if rule.all_vms:
        return "all VMs"
    parts = []
    for label, values in (("VMs", rule.vms), ("owners", rule.owners), ("groups", rule.groups)):
        if values:
            shown = ", ".join(str(v) for v in values[:5])
            parts.append(f"{label} {shown}{' …' if len(values) > 5 else ''}")
    if rule.name_pattern:
        parts.append(f"names {rule.name_pattern}")
    return "; ".join(parts) or "no VM"


def last_cycle(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Rule.last_cycle in words: matched and planned, the exclusions that happened, and why
    the rule took no action (blocked) or failed (error)."""
    if not summary:
        return None
    return {
        "matched": summary.get("matched", 0),
        "planned": summary.get("planned", 0),
        "excluded": [(label, summary[k]) for k, label in EXCLUDED if summary.get(k)],
        "blocked": summary.get("blocked", ""),
        "error": summary.get("error", ""),
    }


# --- create, edit, delete -----------------------------------------------------------------


@operator_required("rules.add_rule")
@require_http_methods(["GET", "HEAD", "POST"])
def rule_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return submit(request, RuleForm(request.POST), None)
    return show_form(request, RuleForm(), None)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_id)
    if request.method == "POST":
        if not request.user.has_perm(EDIT_RULES):
            raise PermissionDenied
        return submit(request, RuleForm(request.POST, instance=rule), snapshot(rule))
    form = RuleForm(instance=rule)
    if not can_edit_rules(request):
        for field in form.fields.values():
            field.disabled = True
    # A stored rule can turn invalid (e.g. an action renamed): every cycle skips it, say so.
    problems = rule_problems(rule)
    wanted = bool(request.GET.get("preview"))
    shown = timed(rule) if wanted and not problems else None  # the saved rule, for any reader
    return show_form(request, form, rule, shown, previewed=wanted, problems=problems)


def submit(request: HttpRequest, form: RuleForm, before: dict[str, Any] | None) -> HttpResponse:
    """Save (and record the change), or with `preview` show what the rule would do."""
    stored = form.instance if form.instance.pk else None
    if "preview" in request.POST:
        rule = form.preview_rule()
        return show_form(request, form, stored, timed(rule) if rule else None, previewed=True)
    if not form.is_valid():
        return show_form(request, form, stored)
    with transaction.atomic():
        if stored is not None and edited_since(stored, request.POST.get("version", "")):
            form.add_error(None, "Someone changed this rule since you opened it: reload it.")
            return show_form(request, form, stored)
        rule = form.save(commit=False)
        if stored is None:
            rule.save()
        else:  # only what the form edits: the service may be writing last_cycle right now
            rule.save(update_fields=[*RuleForm.Meta.fields, "modified"])
        change = record_change(rule, before, snapshot(rule), request.user, via="console")
    verb = "created" if before is None else "saved" if change else "unchanged"
    messages.success(request, f"Rule {rule.name} {verb}.")
    return redirect("web:rule", rule_id=rule.pk)


def version(rule: Rule) -> str:
    """What the edit form carries to notice a concurrent edit (two operators, one rule)."""
    return rule.modified.isoformat() if rule.modified else ""


def edited_since(rule: Rule, seen: str) -> bool:
    """True when the stored rule changed after the form was opened (row locked meanwhile)."""
    current = Rule.objects.select_for_update().only("modified").get(pk=rule.pk)
    return version(current) != seen


def show_form(
    request: HttpRequest,
    form: RuleForm,
    rule: Rule | None,
    shown: tuple[Preview, float] | None = None,
    previewed: bool = False,
    problems: dict[str, list[str]] | None = None,
) -> HttpResponse:
    preview, seconds = shown if shown else (None, 0.0)
    context = {
        "section": "rules",
        "form": form,
        "rule": rule,
        "title": form.initial.get("name") or "New rule",  # as stored, not as being edited
        "can_edit": can_edit_rules(request),
        "preview": preview,
        "preview_seconds": seconds,
        "previewed": previewed,
        "problems": problems,
        # The version the operator started from, kept across re-renders of a POST.
        "version": request.POST.get("version", "")
        if request.method == "POST"
        else (version(rule) if rule else ""),
    }
    return render(request, "web/rules/form.html", context)


@operator_required("rules.delete_rule")
@require_http_methods(["GET", "HEAD", "POST"])
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(Rule, pk=rule_id)
    if request.method == "POST":
        name = rule.name
        with transaction.atomic():
            record_change(rule, snapshot(rule), None, request.user, via="console")
            rule.delete()  # ActionRecord.rule is SET_NULL: the records keep their snapshots
        messages.success(request, f"Rule {name} deleted; its action records are kept.")
        return redirect("web:rules")
    records = ActionRecord.objects.filter(rule=rule).count()
    context = {"section": "rules", "rule": rule, "records": records}
    return render(request, "web/rules/delete.html", context)


# --- history --------------------------------------------------------------------------------


@login_required
@require_safe
def rule_history(request: HttpRequest, rule_id: int) -> HttpResponse:
    """A rule's changes, newest first; a deleted rule's history stays (by rule_pk)."""
    rule = Rule.objects.filter(pk=rule_id).first()
    changes = list(RuleChange.objects.filter(rule_pk=rule_id)[:HISTORY_SHOWN])
    if rule is None and not changes:
        raise Http404("no such rule")
    rows = [
        {"change": c, "fields": [(n, show(n, b), show(n, a)) for n, b, a in changed_fields(c)]}
        for c in changes
    ]
    context = {
        "section": "rules",
        "rule": rule,
        "name": rule.name if rule else changes[0].rule_name,
        "rows": rows,
        "truncated": len(changes) == HISTORY_SHOWN,
    }
    return render(request, "web/rules/history.html", context)


def show(name: str, value: Any) -> str:
    """A snapshot value as the form shows it."""
    if value is None:
        return "—"
    if name == "cooldown" and isinstance(value, int):
        return format_duration(timedelta(seconds=value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value) if value != "" else "(empty)"


# --- reference ------------------------------------------------------------------------------


@login_required
@require_safe
def reference(request: HttpRequest) -> HttpResponse:
    context = {"section": "rules", "reference": markdown_html(reference_markdown())}
    return render(request, "web/rules/reference.html", context)


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def markdown_html(text: str) -> SafeString:
    """The reference's markdown (headings, tables, paragraphs, `code`) as HTML; every piece
    of text is escaped. Only what reference_markdown writes: no new dependency."""
    out: list[str] = []
    table: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line)[1:-1]]
            if not all(set(c) <= {"-"} for c in cells):  # the |---| line
                table.append(cells)
            continue
        if table:
            out.append(_table(table))
            table = []
        if line.startswith("#"):
            out.append(format_html("<h2>{}</h2>", _inline(line.lstrip("#").strip())))
        elif line.strip():
            out.append(format_html("<p>{}</p>", _inline(line)))
    return mark_safe("\n".join(out))  # built from escaped pieces


def _table(rows: list[list[str]]) -> str:
    head = "".join(format_html("<th>{}</th>", _inline(c)) for c in rows[0])
    body = "".join(
        "<tr>" + "".join(format_html("<td>{}</td>", _inline(c)) for c in row) + "</tr>"
        for row in rows[1:]
    )
    return f'<table class="reference"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _inline(text: str) -> SafeString:
    """`code` spans as <code>, the rest escaped."""
    parts = text.split("`")
    html = "".join(
        f"<code>{escape(p)}</code>" if i % 2 else str(escape(p)) for i, p in enumerate(parts)
    )
    return mark_safe(html)  # every part escaped
