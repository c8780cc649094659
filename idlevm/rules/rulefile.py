"""Rules as code: every rule to YAML and back (`manage.py rules export/import`).

Import validates every rule before changing anything; then creates or updates by name in
one transaction (and with `replace`, deletes the rules the file does not name). Export then
import changes nothing, and export is stable (same rules, same text), so rule files diff well
in git.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from idlevm.rules.history import record_change, snapshot
from idlevm.rules.models import Rule

MAX_FILE_BYTES = 1 << 20
SCOPE_KEYS = ("all", "vms", "owners", "groups", "name_pattern")
KEYS = (
    "name", "description", "expression", "action", "enabled", "dry_run", "confirm_destructive",
    "applies_to", "max_actions_per_cycle", "cooldown", "order",
)  # fmt: skip
REQUIRED = ("name", "expression", "action", "applies_to")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?$")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        repeated: set[str] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    repeated.add(str(key))
                seen.add(key)
            except TypeError:  # unhashable: the SafeLoader refuses it below
                continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key given twice: {', '.join(sorted(repeated))}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


class RuleFileError(ValueError):
    """The file cannot be imported; `problems` lists every reason, nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


# --- durations --------------------------------------------------------------------------------


def format_duration(value: timedelta) -> str:
    """1h30m, 45s, 2d: the largest units, no zero parts ("0s" for nothing)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_duration(value: object) -> timedelta:
    """A duration written "1h30m", "2d", "45s". Not a bare number: YAML 1.1 reads `1:30` as
    the number 90, and a unit-less number is a guess either way."""
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f'{value!r} is not a duration (like "1h", "30m", "1h30m", "2d")')
    counts = [int(g or 0) for g in match.groups()]
    try:
        return timedelta(seconds=sum(c * s for c, s in zip(counts, _UNITS.values(), strict=True)))
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


# --- export -------------------------------------------------------------------------------------


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    if rule.all_vms:
        scope["all"] = True
    for key in ("vms", "owners", "groups"):
        if getattr(rule, key):
            scope[key] = list(getattr(rule, key))
    if rule.name_pattern:
        scope["name_pattern"] = rule.name_pattern
    return {
        "name": rule.name,
        "description": rule.description,
        "expression": rule.expression,
        "action": rule.action,
        "enabled": rule.enabled,
        "dry_run": rule.dry_run,
        "confirm_destructive": rule.confirm_destructive,
        "applies_to": "all" if scope == {"all": True} else scope,
        "max_actions_per_cycle": rule.max_actions_per_cycle,
        "cooldown": format_duration(rule.cooldown),
        "order": rule.order,
    }


def export_rules() -> str:
    rules = [rule_to_dict(r) for r in Rule.objects.order_by("order", "name")]
    return yaml.safe_dump({"rules": rules}, sort_keys=False, allow_unicode=True, width=100)


# --- import -------------------------------------------------------------------------------------


def load(text: str) -> list[dict[str, Any]]:
    if len(text.encode()) > MAX_FILE_BYTES:
        raise RuleFileError([f"the file is larger than {MAX_FILE_BYTES} bytes"])
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise RuleFileError([f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RuleFileError(["the file must be a mapping with a list under 'rules'"])
    if set(data) - {"rules"}:
        raise RuleFileError(
            [f"unknown top-level keys: {', '.join(map(str, set(data) - {'rules'}))}"]
        )
    return data["rules"]  # type: ignore[no-any-return]


def build(entry: object, existing: dict[str, Rule]) -> Rule:
    """A Rule (unsaved; the existing one of that name, updated) from one file entry."""
    if not isinstance(entry, dict):
        raise ValueError("each rule must be a mapping")
    unknown = set(entry) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise ValueError(f"missing keys: {', '.join(missing)}")
    name = entry["name"]
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    rule = existing.get(name) or Rule(name=name)
    defaults = Rule()
    for key in ("description", "expression", "action"):
        value = entry.get(key, getattr(defaults, key))
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        setattr(rule, key, value)
    for key in ("enabled", "dry_run", "confirm_destructive"):
        value = entry.get(key, getattr(defaults, key))
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        setattr(rule, key, value)
    for key in ("max_actions_per_cycle", "order"):
        value = entry.get(key, getattr(defaults, key))
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{key} must be a whole number")
        setattr(rule, key, value)
    rule.cooldown = parse_duration(entry.get("cooldown", format_duration(defaults.cooldown)))
    set_scope(rule, entry["applies_to"])
    return rule


def set_scope(rule: Rule, scope: object) -> None:
    if scope == "all":
        scope = {"all": True}
    if not isinstance(scope, dict):
        raise ValueError('applies_to must be "all" or a mapping of all, vms, owners, groups, '
                         "name_pattern")  # fmt: skip
    unknown = set(scope) - set(SCOPE_KEYS)
    if unknown:
        raise ValueError(f"unknown applies_to keys: {', '.join(sorted(map(str, unknown)))}")
    all_vms = scope.get("all", False)
    if not isinstance(all_vms, bool):
        raise ValueError("applies_to.all must be true or false")
    pattern = scope.get("name_pattern", "")
    if not isinstance(pattern, str):
        raise ValueError("applies_to.name_pattern must be a string")
    rule.all_vms, rule.name_pattern = all_vms, pattern
    rule.vms = scope.get("vms", [])
    rule.owners = scope.get("owners", [])
    rule.groups = scope.get("groups", [])


def import_rules(text: str, replace: bool = False, check_only: bool = False) -> ImportResult:
    """Validate every rule, then apply them all or nothing."""
    entries = load(text)
    existing = {r.name: r for r in Rule.objects.all()}
    before = {name: rule_to_dict(r) for name, r in existing.items()}
    stored = {name: snapshot(r) for name, r in existing.items()}  # for the history
    problems: list[str] = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, 1):
        label = f"rule {index}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label += f" ({entry['name']})"
        try:
            rule = build(entry, existing)
            if rule.name in seen:
                raise ValueError("a rule of this name comes earlier in the file")
            seen.add(rule.name)
            rule.full_clean(exclude=["last_cycle"])
        except ValidationError as exc:
            problems += [f"{label}: {f}: {m}" for f, ms in exc.message_dict.items() for m in ms]
            continue
        except ValueError as exc:
            problems.append(f"{label}: {exc}")
            continue
        rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    result = ImportResult()
    for rule in rules:
        if rule.pk is None:
            result.created.append(rule.name)
        elif rule_to_dict(rule) != before[rule.name]:
            result.updated.append(rule.name)
        else:
            result.unchanged.append(rule.name)
    if replace:
        result.deleted = sorted(set(existing) - seen)
    if check_only:
        return result
    with transaction.atomic():
        for rule in rules:
            if rule.name not in result.unchanged:
                rule.save()
                record_change(rule, stored.get(rule.name), snapshot(rule), None, via="import")
        for name in result.deleted:
            record_change(existing[name], stored[name], None, None, via="import")
        Rule.objects.filter(name__in=result.deleted).delete()
    return result
