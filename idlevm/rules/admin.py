from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from idlevm.rules.models import ActionRecord, Rule


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin[Rule]):
    """Saving runs Rule.clean(): the same validation as every cycle and `rules import`."""

    list_display = ["name", "action", "enabled", "dry_run", "order", "max_actions_per_cycle"]
    list_filter = ["action", "enabled", "dry_run"]
    search_fields = ["name", "expression", "description"]
    readonly_fields = ["last_cycle", "created", "modified"]


@admin.register(ActionRecord)
class ActionRecordAdmin(admin.ModelAdmin[ActionRecord]):
    """The history is append-only: readable here, never edited or deleted."""

    list_display = ["time", "rule_name", "action", "vm_id", "vm_name", "outcome", "dry_run"]
    list_filter = ["outcome", "action", "dry_run"]
    search_fields = ["rule_name", "vm_name", "vm_owner"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
