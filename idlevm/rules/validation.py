"""Whole-rule validation, shared by the model (forms, admin), the rules file and each cycle."""

from __future__ import annotations

from typing import Any

from idlevm.rules.actions import ACTIONS
from idlevm.rules.checker import RuleError
from idlevm.rules.compiler import compile_rule

MAX_NAME_PATTERN = 255
MAX_COOLDOWN = 366 * 86400  # seconds; beyond, `now - cooldown` nears datetime's limits


def rule_problems(rule: Any) -> dict[str, list[str]]:
    """Every problem of a rule (a Rule or anything with its attributes), by field."""
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    try:
        compile_rule(rule.expression)
    except RuleError as exc:
        add("expression", str(exc))
    action = ACTIONS.get(rule.action)
    if action is None:
        add("action", f"unknown action {rule.action!r} (known: {', '.join(ACTIONS)})")
    elif action.needs_confirmation and not rule.confirm_destructive:
        add("confirm_destructive", f"{action.name} cannot be undone: set confirm_destructive")
    if not _int_list(rule.vms):
        add("vms", "VM ids must be a list of whole numbers >= 0")
    for field in ("owners", "groups"):
        if not _str_list(getattr(rule, field)):
            add(field, f"{field} must be a list of names")
    if len(rule.name_pattern or "") > MAX_NAME_PATTERN:
        add("name_pattern", f"at most {MAX_NAME_PATTERN} characters")
    scoped = rule.all_vms or rule.vms or rule.owners or rule.groups or rule.name_pattern
    if not scoped:
        add("all_vms", "the rule applies to no VM: choose all VMs, or VMs, owners, groups or "
            "a name pattern")  # fmt: skip
    if rule.cooldown is not None and not 0 <= rule.cooldown.total_seconds() <= MAX_COOLDOWN:
        add("cooldown", f"must be between 0 and {MAX_COOLDOWN // 86400} days")
    return problems


def _int_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
