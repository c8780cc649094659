"""The history of the rules: who changed which rule, when, from what to what (RuleChange).

Written wherever rules change, in the same transaction as the change: the console
(idlevm/web/views/rules.py), the admin (admin.py) and `rules import` (rulefile.py).
"""

from __future__ import annotations

from typing import Any

from idlevm.rules.models import Rule, RuleChange

# The fields an operator edits, in the order the console shows them.
EDITABLE = (
    "name", "description", "expression", "action", "enabled", "dry_run", "confirm_destructive",
    "all_vms", "vms", "owners", "groups", "name_pattern", "max_actions_per_cycle", "cooldown",
    "order",
)  # fmt: skip

Snapshot = dict[str, Any]


def snapshot(rule: Rule) -> Snapshot:
    """The editable fields as JSON (the cooldown in whole seconds)."""
    values = {name: getattr(rule, name) for name in EDITABLE}
    values["cooldown"] = None if rule.cooldown is None else int(rule.cooldown.total_seconds())
    for name in ("vms", "owners", "groups"):
        values[name] = list(values[name] or [])
    return values


def record_change(
    rule: Rule, before: Snapshot | None, after: Snapshot | None, user: Any, via: str
) -> RuleChange | None:
    """Record a change: before None for a creation, after None for a deletion (record it
    before deleting the rule, so that rule_pk is known). Nothing is recorded when nothing
    changed. `user` may be None (a command) or anonymous."""
    if before is not None and after is not None and before == after:
        return None
    kind = RuleChange.Kind.CREATED if before is None else RuleChange.Kind.CHANGED
    if after is None:
        kind = RuleChange.Kind.DELETED
    known = user if getattr(user, "pk", None) is not None else None
    return RuleChange.objects.create(
        rule=rule, rule_pk=rule.pk, rule_name=rule.name, kind=kind, before=before, after=after,
        user=known, username=known.get_username() if known else "", via=via,
    )  # fmt: skip


def changed_fields(change: RuleChange) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field that differs (every field for a creation or a
    deletion), in EDITABLE order."""
    before, after = change.before or {}, change.after or {}
    names = [n for n in EDITABLE if n in before or n in after]
    names += sorted((set(before) | set(after)) - set(EDITABLE))  # fields of older versions
    return [(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]
