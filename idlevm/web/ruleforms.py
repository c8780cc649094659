"""The console's rule form: a ModelForm over Rule whose validation is Rule.clean (the shared
rule_problems), with lists and durations edited as text, and the expression's error kept
with its position so the page can point at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from idlevm.rules.actions import ACTIONS
from idlevm.rules.checker import RuleError
from idlevm.rules.compiler import compile_rule
from idlevm.rules.models import Rule
from idlevm.rules.rulefile import format_duration
from idlevm.rules.validation import MAX_COOLDOWN
from idlevm.web.params import parse_id

_SEPARATORS = re.compile(r"[\s,]+")
_UNIT_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_PART = re.compile(r"([0-9]{1,9})\s*([a-z]+)")


def parse_seconds(text: str) -> int:
    """A duration written "2h", "30min", "1d 12h", "1h30m" or in seconds ("90"), in seconds;
    else ValueError. Not yet a timedelta: a huge one ("999999999w") overflows it."""
    value = text.strip().lower()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    parts = _PART.findall(value)
    if not parts or _PART.sub("", value).strip(" ,") or len(parts) > 5:
        raise ValueError(f'"{text}" is not a duration: write e.g. 2h, 30min, 1d or seconds')
    seconds = 0
    for count, unit in parts:
        if unit not in _UNIT_SECONDS:
            raise ValueError(f'unknown unit "{unit}": use s, min, h, d or w')
        seconds += int(count) * _UNIT_SECONDS[unit]
    return seconds


def parse_duration(text: str, max_seconds: int = MAX_COOLDOWN) -> timedelta:
    """A duration as parse_seconds reads it, up to `max_seconds` (the rules' cooldown
    limit, in the words of its validation); else ValueError."""
    seconds = parse_seconds(text)
    if seconds > max_seconds:
        raise ValueError(f"must be between 0 and {max_seconds // 86400} days")
    return timedelta(seconds=seconds)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


class DurationText(forms.Field):
    """A duration edited as text; shown as rules files write it ("1h30m")."""

    def prepare_value(self, value: Any) -> Any:
        return format_duration(value) if isinstance(value, timedelta) else value

    def to_python(self, value: Any) -> timedelta | None:
        text = _text(value)
        if not text:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ListText(forms.Field):
    """A list edited as comma- or space-separated text: names, or VM ids with `ints`."""

    def __init__(self, *, ints: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.ints = ints

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[Any]:
        words = [w for w in _SEPARATORS.split(_text(value)) if w]
        if not self.ints:
            return list(dict.fromkeys(words))
        ids = [parse_id(w) for w in words]
        bad = [w for w, vm_id in zip(words, ids, strict=True) if vm_id is None]
        if bad:
            raise ValidationError(f"VM ids are whole numbers: not {', '.join(bad[:5])}")
        return list(dict.fromkeys(ids))


@dataclass(frozen=True)
class Pointer:
    """An expression error shown where it is: the lines up to it, a caret under the column,
    the lines after."""

    message: str
    line: int | None
    column: int | None
    before: str
    caret: str
    after: str


def point_at(source: str, error: RuleError) -> Pointer:
    if error.line is None:
        return Pointer(error.message, None, None, source, "", "")
    lines = source.split("\n")
    index = min(max(error.line, 1), len(lines)) - 1
    text = lines[index]
    column = min(max(error.column or 1, 1), len(text) + 1)
    # Keep tabs under tabs so the caret lines up however the browser renders them.
    pad = "".join("\t" if c == "\t" else " " for c in text[: column - 1])
    return Pointer(
        error.message, index + 1, column, "\n".join(lines[: index + 1]), pad + "^",
        "\n".join(lines[index + 1 :]),
    )  # fmt: skip


def _action_choices() -> list[tuple[str, str]]:
    where = {
        a.name: f"in {a.describe_states()}" if a.states else "any state" for a in ACTIONS.values()
    }
    return [(name, f"{name} ({states})") for name, states in where.items()]


class RuleForm(forms.ModelForm[Rule]):
    """Validation is the model's (Rule.clean -> rule_problems), as in the admin and the rules
    file; the form only turns text into lists and durations."""

    vms = ListText(ints=True, label="VM ids", help_text="OpenNebula ids, e.g. 12, 13 40")
    owners = ListText(help_text="user names, comma or space separated")
    groups = ListText(help_text="group names, comma or space separated")
    cooldown = DurationText(
        # A declared field loses the model's default: give a new rule the model's cooldown.
        initial=Rule._meta.get_field("cooldown").default,
        help_text="no second action by this rule on the same VM before this: 2h, 30min, 1d, "
        "1h30m or seconds",
    )

    class Meta:
        model = Rule
        fields = [
            "name", "description", "expression", "action", "enabled", "dry_run",
            "confirm_destructive", "all_vms", "vms", "owners", "groups", "name_pattern",
            "max_actions_per_cycle", "cooldown", "order",
        ]  # fmt: skip
        labels = {"all_vms": "All VMs", "max_actions_per_cycle": "Max actions per cycle"}
        help_texts = {
            "dry_run": "record what it would do, send nothing (new rules start in dry run)",
            "all_vms": "or limit it to the VMs, owners, groups or name pattern below",
            "name_pattern": 'shell-style, e.g. "test-*"',
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "expression": forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"] = forms.ChoiceField(choices=_action_choices())
        self.pointer: Pointer | None = None

    def clean_expression(self) -> str:
        """Only keeps where the expression is wrong: the message itself comes from
        rule_problems in Rule.clean, like every other problem."""
        # Browsers send CRLF line ends; the rule is stored (and exported) with "\n".
        source: str = self.cleaned_data["expression"].replace("\r\n", "\n")
        try:
            compile_rule(source)
        except RuleError as exc:
            self.pointer = point_at(source, exc)
        return source

    def preview_rule(self) -> Rule | None:
        """The rule as edited (unsaved), when it is valid; None otherwise."""
        return self.instance if self.is_valid() else None
