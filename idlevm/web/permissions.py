"""Who may do what in the console.

Reading needs an active, logged-in user (`login_required`). Changing rules and errors needs
the permissions of the "operators" group (created by migration 0001 of this app); a
superuser has them all. The x509 login of the next issue maps certificates to users; these
checks stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest

OPERATORS = "operators"
# app_label.codename of every permission the operators group holds.
OPERATOR_PERMISSIONS = (
    "rules.add_rule",
    "rules.change_rule",
    "rules.delete_rule",
    "inventory.change_errormessage",
)
EDIT_RULES = "rules.change_rule"
EDIT_ERRORS = "inventory.change_errormessage"


def can_edit_rules(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(EDIT_RULES))


def can_edit_errors(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(EDIT_ERRORS))


def operator_required(perm: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Login for anonymous users; 403 (not a login loop) for a logged-in user without
    `perm`."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        return login_required(permission_required(perm, raise_exception=True)(view))

    return decorate


def operators_group(group_model: Any = None, permission_model: Any = None) -> Any:
    """The operators group with its permissions, made if missing. Migration 0001 calls it
    with its historical models; tests that flush the database call it again."""
    from django.contrib.auth.models import Group, Permission

    group_model = group_model or Group
    permission_model = permission_model or Permission
    group, _ = group_model.objects.get_or_create(name=OPERATORS)
    for name in OPERATOR_PERMISSIONS:
        app_label, codename = name.split(".")
        group.permissions.add(
            permission_model.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return group
