from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from idlevm.inventory.admin import ReadOnlyAdmin
from idlevm.rules.history import record_change, snapshot
from idlevm.rules.models import ActionRecord, Rule, RuleChange


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin[Rule]):
    """Saving runs Rule.clean(): the same validation as every cycle and `rules import`."""

    list_display = ["name", "action", "enabled", "dry_run", "order", "max_actions_per_cycle"]
    list_filter = ["action", "enabled", "dry_run"]
    search_fields = ["name", "expression", "description"]
    readonly_fields = ["last_cycle", "created", "modified"]

    # Every change is recorded (RuleChange), as the console and `rules import` do; the admin
    # runs save_model and delete_model inside its own transaction.
    def save_model(self, request: HttpRequest, obj: Rule, form: forms.Form, change: bool) -> None:
        stored = Rule.objects.filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        before = snapshot(stored) if stored is not None else None
        record_change(obj, before, snapshot(obj), request.user, via="admin")

    def delete_model(self, request: HttpRequest, obj: Rule) -> None:
        record_change(obj, snapshot(obj), None, request.user, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        with transaction.atomic():
            for rule in queryset:
                record_change(rule, snapshot(rule), None, request.user, via="admin")
            super().delete_queryset(request, queryset)


@admin.register(ActionRecord)
class ActionRecordAdmin(ReadOnlyAdmin[ActionRecord]):
    """The history is append-only: readable here, never edited or deleted."""

    list_display = ["time", "rule_name", "action", "vm_id", "vm_name", "outcome", "dry_run"]
    list_filter = ["outcome", "action", "dry_run"]
    search_fields = ["rule_name", "vm_name", "vm_owner"]


@admin.register(RuleChange)
class RuleChangeAdmin(ReadOnlyAdmin[RuleChange]):
    """The rules' history (written by the console, the admin and `rules import`): read-only."""

    list_display = ["time", "rule_name", "kind", "username", "via"]
    list_filter = ["kind", "via"]
    search_fields = ["rule_name", "username"]
