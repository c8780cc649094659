"""The language reference, generated from the allow-lists (so it cannot drift from them).

`reference_markdown()` is the block between the markers in docs/rules.md (a test compares
them) and what `manage.py rules reference` prints.
"""

from __future__ import annotations

from idlevm.rules.actions import ACTIONS
from idlevm.rules.fields import FIELDS, NOW
from idlevm.rules.functions import ATTRIBUTES, CONSTRUCTORS, FUNCTIONS, MODULES, Function
from idlevm.rules.types import BOOL, INT, NONE, NUMBERS, Type

START, END = "<!-- reference:start -->", "<!-- reference:end -->"


def _type(t: Type) -> str:
    return f"{t.kind} or None" if t.nullable else t.kind


def _kinds(kinds: frozenset[str]) -> str:
    """Argument kinds in words: numbers are one kind to an operator, bool included."""
    words = set(kinds)
    if words >= NUMBERS:
        words = (words - NUMBERS) | {"number"}
    elif words & NUMBERS:
        words = (words - {BOOL}) | ({"int"} if INT in words else set())
    return "|".join(sorted(words - {NONE}))


def _params(fn: Function) -> str:
    names = [f"{_kinds(p)}{'?' if i >= fn.required else ''}" for i, p in enumerate(fn.params)]
    if fn.variadic:
        names.append("...")
    names += [f"{k}=" for k in fn.keywords]
    return ", ".join(names)


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def reference_markdown() -> str:
    lines = ["### Fields (per VM)", "", _row("name", "type", "meaning", "example")]
    lines.append(_row("---", "---", "---", "---"))
    for f in [*FIELDS.values(), NOW]:
        lines.append(_row(f"`{f.name}`", _type(f.type), f.meaning, f"`{f.example}`"))
    lines += ["", "### Functions", "", _row("call (argument kinds)", "meaning", "example")]
    lines.append(_row("---", "---", "---"))
    for fn in [*FUNCTIONS.values(), *CONSTRUCTORS.values()]:
        example = f"`{fn.example}`" if fn.example else ""
        lines.append(_row(f"`{fn.name}({_params(fn)})`", fn.doc, example))
    lines += ["", "### Attributes and methods", "", _row("of", "allowed")]
    lines.append(_row("---", "---"))
    for kind, members in ATTRIBUTES.items():
        shown = [f"`{n}()`" if isinstance(m, Function) else f"`{n}`" for n, m in members.items()]
        lines.append(_row(kind, ", ".join(shown)))
    lines += ["", f"Modules: {', '.join(f'`{m}`' for m in MODULES)} (only the members above).",
              "", "### Actions", "", _row("action", "applies in states", "meaning")]  # fmt: skip
    lines.append(_row("---", "---", "---"))
    for action in ACTIONS.values():
        lines.append(_row(f"`{action.name}`", action.describe_states(), action.doc))
    return "\n".join(lines) + "\n"
