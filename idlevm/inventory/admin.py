from typing import TypeVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from idlevm.inventory.models import (
    CollectionRun,
    ErrorEvent,
    ErrorMessage,
    Host,
    IdleSample,
    VirtualMachine,
)

_M = TypeVar("_M", bound=Model)


@admin.register(Host)
class HostAdmin(admin.ModelAdmin[Host]):
    list_display = ["id", "name", "state_name", "running_vms", "last_seen", "gone_at"]
    search_fields = ["name"]


@admin.register(VirtualMachine)
class VirtualMachineAdmin(admin.ModelAdmin[VirtualMachine]):
    list_display = ["id", "name", "owner", "host_name", "state_name", "lcm_state_name", "idle"]
    list_filter = ["state_name", "idle"]
    search_fields = ["name", "owner"]


@admin.register(IdleSample)
class IdleSampleAdmin(admin.ModelAdmin[IdleSample]):
    list_display = ["vm", "received", "idle", "cpu_pct"]
    raw_id_fields = ["vm"]


@admin.register(CollectionRun)
class CollectionRunAdmin(admin.ModelAdmin[CollectionRun]):
    list_display = ["started", "outcome", "hosts", "vms", "new_samples", "errors"]


@admin.register(ErrorMessage)
class ErrorMessageAdmin(admin.ModelAdmin[ErrorMessage]):
    list_display = ["kind", "subject", "count", "first_seen", "modified", "cleared"]
    list_filter = ["kind", "cleared"]
    # `first_seen`, `modified` and `count` belong to the service. The text, the note and the
    # cleared state are edited in the console, which records each change as an ErrorEvent;
    # here they would change without history. Deleting would cascade to the history.
    readonly_fields = ["first_seen", "modified", "count", "cleared", "cleared_at", "message",
                       "note"]  # fmt: skip

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    """For append-only histories: readable in the admin, never added, edited or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ErrorEvent)
class ErrorEventAdmin(ReadOnlyAdmin[ErrorEvent]):
    """The errors' history is append-only: readable here, never edited."""

    list_display = ["time", "error", "kind", "username"]
    list_filter = ["kind"]
