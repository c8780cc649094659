"""The VM list: filters and search (GET parameters, validated), sorting and pagination.

The filters follow the service's own definitions (idlevm.rules.fields): idle data is fresh
when received within IDLE_STALE_SECONDS (a host clock up to FUTURE_SKEW ahead still counts),
only fresh data says idle or busy, and a VM is exempt when its USER_TEMPLATE has
IDLEVM_EXEMPT="YES". Here they are SQL expressions, so the database filters, sorts and pages
the list in a fixed number of queries whatever its size; tests check that each agrees with
its Python definition. "Matched by rule" cannot be SQL (a rule is Python): see `rule_filter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.db.models import (
    Case,
    DateTimeField,
    F,
    FloatField,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import OrderBy
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Least, Lower, NullIf
from django.db.models.lookups import Contains, IRegex
from django.http import QueryDict
from django.utils.safestring import SafeString, mark_safe

from idlevm.inventory.models import VirtualMachine
from idlevm.one.states import LCM_BY_NAME, LCM_STATES, VM_BY_NAME, VM_STATES
from idlevm.rules.fields import EXEMPT_ATTRIBUTE, FIELDS, FUTURE_SKEW, Context
from idlevm.rules.models import Rule
from idlevm.web.params import parse_id

PER_PAGE = (25, 50, 100, 200)
DEFAULT_PER_PAGE = 50
YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]
SHOW = [("live", "in OpenNebula"), ("gone", "gone from OpenNebula"), ("all", "all")]
# Sort keys (GET `sort=key`, `sort=-key` for descending) and their column titles.
COLUMNS: dict[str, str] = {
    "id": "id", "name": "name", "owner": "owner", "host": "host", "state": "state",
    "idle_for": "idle for", "cpu": "CPU %", "net": "net rx / tx", "age": "last data",
}  # fmt: skip
NUMERIC = {"id", "idle_for", "cpu", "net", "age"}
# What a list row reads: nothing else is loaded (monitoring can be large).
ROW_COLUMNS = (
    "id", "name", "owner", "group", "host_id", "host_name", "state", "state_name", "lcm_state",
    "lcm_state_name", "idle", "idle_since", "idle_received", "cpu_pct", "net_rx_bps",
    "net_tx_bps", "user_template", "gone_at",
)  # fmt: skip


class VmFilters(forms.Form):
    """The list's GET parameters; anything else than these values is a 400 with the reason."""

    q = forms.CharField(required=False, max_length=200, label="search")
    state = forms.CharField(required=False, max_length=100)
    host = forms.CharField(required=False, max_length=20)
    owner = forms.CharField(required=False, max_length=255)
    idle = forms.ChoiceField(required=False, choices=YES_NO)
    stale = forms.ChoiceField(required=False, choices=YES_NO)
    exempt = forms.ChoiceField(required=False, choices=YES_NO)
    rule = forms.IntegerField(required=False, min_value=1, max_value=10**18)
    show = forms.ChoiceField(required=False, choices=SHOW)
    sort = forms.ChoiceField(
        required=False, choices=[(f"{d}{k}", f"{d}{k}") for k in COLUMNS for d in ("", "-")]
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=10**7)
    per = forms.TypedChoiceField(
        required=False, choices=[(str(n), str(n)) for n in PER_PAGE], coerce=int, empty_value=None
    )

    def clean_state(self) -> tuple[int, int | None] | None:
        """A state name ("ACTIVE") or with its LCM state ("ACTIVE/RUNNING") as numbers."""
        value = self.cleaned_data["state"].strip().upper()
        if not value:
            return None
        state, _, lcm = value.partition("/")
        if state not in VM_BY_NAME or (lcm and lcm not in LCM_BY_NAME):
            raise forms.ValidationError(
                f"unknown state {value!r}: use an OpenNebula state name (ACTIVE, POWEROFF, "
                "...), optionally with its LCM state (ACTIVE/RUNNING)"
            )
        return VM_BY_NAME[state], LCM_BY_NAME[lcm] if lcm else None

    def clean_host(self) -> int | str | None:
        value = self.cleaned_data["host"].strip()
        if not value:
            return None
        if value == "none":
            return "none"
        host_id = parse_id(value)
        if host_id is None:
            raise forms.ValidationError('a host id (a whole number), or "none"')
        return host_id


def options(choices: Iterable[tuple[str, str]], selected: object) -> SafeString:
    """<option>s of a select, built here: a template loop over 500 hosts took 30 ms, and
    format_html 10 ms (html.escape quotes too: safe in attributes and text)."""
    chosen = "" if selected is None else str(selected)
    return mark_safe(
        "".join(
            f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
            f"{escape(label)}</option>"
            for value, label in choices
        )
    )


def state_label(state: int, lcm_state: int | None) -> str:
    name = VM_STATES.get(state, str(state))
    return name if lcm_state is None else f"{name}/{LCM_STATES.get(lcm_state, lcm_state)}"


def state_options(present: Iterable[tuple[int, int]]) -> list[tuple[str, str]]:
    """The state select: each state present, and ACTIVE's LCM states (the interesting ones)."""
    options: dict[str, str] = {}
    for state, lcm in sorted(set(present)):
        options.setdefault(state_label(state, None), state_label(state, None))
        if VM_STATES.get(state) == "ACTIVE":
            options[state_label(state, lcm)] = state_label(state, lcm)
    return list(options.items())


def selects(
    form: VmFilters, hosts: list[tuple[int, str]], rules: list[Rule],
    states: list[tuple[str, str]],
) -> dict[str, SafeString]:  # fmt: skip
    """Each filter select's options, the submitted value selected (even when invalid)."""
    any_ = [("", "any")]
    host_choices = [("", "any"), ("none", "not on a host")]
    host_choices += [(str(i), f"{name} (#{i})") for i, name in hosts]
    rule_choices = any_ + [
        (str(r.pk), r.name if r.enabled else f"{r.name} (disabled)") for r in rules
    ]
    return {
        "state": options(any_ + states, form["state"].value()),
        "host": options(host_choices, form["host"].value()),
        "rule": options(rule_choices, form["rule"].value()),
        "idle": options(YES_NO, form["idle"].value()),
        "stale": options(YES_NO, form["stale"].value()),
        "exempt": options(YES_NO, form["exempt"].value()),
        "show": options(SHOW, form["show"].value()),
        "per": options([(str(n), str(n)) for n in PER_PAGE],
                       form["per"].value() or DEFAULT_PER_PAGE),
    }  # fmt: skip


# --- the service's definitions as SQL ---------------------------------------------------------


def fresh_q(ctx: Context) -> Q:
    """Context.fresh as SQL: received within the stale period, or a little in the future."""
    return Q(idle_received__gte=ctx.now - ctx.stale_after, idle_received__lte=ctx.now + FUTURE_SKEW)


def stale_q(ctx: Context) -> Q:
    """The `stale` field: no record, or one that is not fresh."""
    return (
        Q(idle_received__isnull=True)
        | Q(idle_received__lt=ctx.now - ctx.stale_after)
        | Q(idle_received__gt=ctx.now + FUTURE_SKEW)
    )


def exempt_q() -> Q:
    """fields.is_exempt as SQL: a string "yes" in any case, surrounded by any white space
    (str.strip() and the regular expression's \\s agree; tests check it on each backend).

    A missing key or a JSON null reads as "", so that the negation holds for them too.
    Lower(): MariaDB compares JSON text case-sensitively even with REGEXP's "i". The LIKE
    on the whole template first: SQLite runs REGEXP in Python, 2 us a row, and few VMs
    have the attribute at all.
    """
    text = Coalesce(
        KeyTextTransform(EXEMPT_ATTRIBUTE, "user_template"), Value(""), output_field=TextField()
    )
    mentioned = Contains(Cast("user_template", TextField()), EXEMPT_ATTRIBUTE)
    return Q(mentioned) & Q(IRegex(Lower(text), r"^\s*yes\s*$"))


def idle_start(ctx: Context) -> Case:
    """When the current idle stretch began, as `idle_for` counts it (now for a busy VM, None
    without fresh data): sorting by it ascending is sorting by idle_for descending."""
    now = Value(ctx.now, output_field=DateTimeField())
    return Case(
        When(fresh_q(ctx) & Q(idle=True, idle_since__isnull=False),
             then=Least(F("idle_since"), now)),
        When(fresh_q(ctx) & Q(idle=False), then=now),
        default=None, output_field=DateTimeField(),
    )  # fmt: skip


def fresh_value(ctx: Context, expression: Any) -> Case:
    """A signal as rules read it: None unless the data is fresh."""
    return Case(When(fresh_q(ctx), then=expression), default=None, output_field=FloatField())


def net_total(ctx: Context) -> Case:
    both_missing = Q(net_rx_bps__isnull=True, net_tx_bps__isnull=True)
    total = Coalesce(F("net_rx_bps"), 0.0) + Coalesce(F("net_tx_bps"), 0.0)
    return Case(When(fresh_q(ctx) & ~both_missing, then=total), default=None,
                output_field=FloatField())  # fmt: skip


def ordering(sort: str, ctx: Context) -> list[OrderBy]:
    """ORDER BY for a sort key: missing values last either way, then the id (stable pages)."""
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key == "idle_for":  # by when idling began, the other way round
        exprs: list[Any] = [idle_start(ctx)]
        descending = not descending
    else:
        columns: dict[str, list[Any]] = {
            "id": [F("id")], "name": [F("name")], "owner": [F("owner")],
            "host": [NullIf(F("host_name"), Value(""))],  # not on a host: last
            "state": [F("state_name"), F("lcm_state_name")],
            "cpu": [fresh_value(ctx, F("cpu_pct"))], "net": [net_total(ctx)],
            "age": [F("idle_received")],
        }  # fmt: skip
        exprs = columns[key]
        if key == "age":  # the youngest data first when ascending
            descending = not descending
    order = [e.desc(nulls_last=True) if descending else e.asc(nulls_last=True) for e in exprs]
    if key != "id":
        order.append(F("id").asc())
    return order


def search_q(text: str) -> Q:
    """Name, owner or host containing the text; a number (or #number) is also a VM id."""
    found = Q(name__icontains=text) | Q(owner__icontains=text) | Q(host_name__icontains=text)
    vm_id = parse_id(text.removeprefix("#"))
    if vm_id is not None:
        found |= Q(id=vm_id)
    return found


def filtered(data: dict[str, Any], ctx: Context) -> QuerySet[VirtualMachine]:
    """The VMs the cleaned filters select, sorted (rule matching aside)."""
    vms = VirtualMachine.objects.all()
    show = data.get("show") or "live"
    if show != "all":
        vms = vms.filter(gone_at__isnull=(show == "live"))
    if data.get("q"):
        vms = vms.filter(search_q(data["q"].strip()))
    if data.get("state"):
        state, lcm = data["state"]
        vms = vms.filter(state=state) if lcm is None else vms.filter(state=state, lcm_state=lcm)
    host = data.get("host")
    if host == "none":
        vms = vms.filter(host_id__isnull=True)
    elif host is not None:
        vms = vms.filter(host_id=host)
    if data.get("owner"):
        vms = vms.filter(owner=data["owner"])
    if data.get("idle"):
        vms = vms.filter(fresh_q(ctx), idle=(data["idle"] == "yes"))
    if data.get("stale"):
        vms = vms.filter(stale_q(ctx)) if data["stale"] == "yes" else vms.filter(fresh_q(ctx))
    if data.get("exempt"):
        vms = vms.filter(exempt_q()) if data["exempt"] == "yes" else vms.exclude(exempt_q())
    return vms.order_by(*ordering(data.get("sort") or "id", ctx))


def rows_by_id(ids: Sequence[int]) -> list[VirtualMachine]:
    """One page of VMs by id, in the given order (one query)."""
    found = VirtualMachine.objects.only(*ROW_COLUMNS).in_bulk(list(ids))
    return [found[i] for i in ids if i in found]


# --- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One VM as the list shows it, every value computed as the rules read it."""

    vm: VirtualMachine
    fresh: bool
    idle: object  # True, False, or None without fresh data
    idle_for: float | None  # seconds
    cpu_pct: object
    net_rx: object
    net_tx: object
    exempt: bool
    data_age: float | None  # seconds, fresh or not
    owner_link: str  # this list narrowed to the VM's owner
    host_link: str


class Narrow:
    """Links to the current list with one filter more (first page): built here, as 100
    {% querystring %} tags a page cost several milliseconds."""

    def __init__(self, query: QueryDict) -> None:
        self.pairs = [(k, v) for k, values in query.lists() for v in values if k != "page"]

    def __call__(self, key: str, value: object) -> str:
        pairs = [(k, v) for k, v in self.pairs if k != key]
        return "?" + urlencode([*pairs, (key, str(value))])


def row(vm: VirtualMachine, ctx: Context, narrow: Narrow) -> Row:
    def get(name: str) -> Any:
        return FIELDS[name].get(vm, ctx)

    idle_for, age = get("idle_for"), get("data_age")
    return Row(
        vm=vm, fresh=ctx.fresh(vm), idle=get("idle"),
        idle_for=None if idle_for is None else idle_for.total_seconds(),
        cpu_pct=get("cpu_pct"), net_rx=get("net_rx_bps"), net_tx=get("net_tx_bps"),
        exempt=get("exempt"), data_age=None if age is None else age.total_seconds(),
        owner_link=narrow("owner", vm.owner),
        host_link="" if vm.host_id is None else narrow("host", vm.host_id),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Header:
    key: str
    title: str
    next_sort: str  # what clicking the header sorts by
    arrow: str
    numeric: bool


def headers(sort: str) -> list[Header]:
    current, descending = sort.lstrip("-"), sort.startswith("-")
    out = []
    for key, title in COLUMNS.items():
        if key == current:
            out.append(Header(key, title, key if descending else f"-{key}",
                              "▼" if descending else "▲", key in NUMERIC))  # fmt: skip
        else:  # a first click on a numeric column shows the largest first
            first = f"-{key}" if key in NUMERIC and key not in ("id", "age") else key
            out.append(Header(key, title, first, "", key in NUMERIC))
    return out


def page_numbers(current: int, last: int, around: int = 2) -> Sequence[int | None]:
    """1 … 148 149 [150] 151 152 … 200: None marks a gap."""
    wanted = {1, last, *range(current - around, current + around + 1)}
    shown = sorted(n for n in wanted if 1 <= n <= last)
    out: list[int | None] = []
    for n in shown:
        if out and n - (out[-1] or 0) > 1:
            out.append(None)
        out.append(n)
    return out


FILTERS = ("q", "state", "host", "owner", "idle", "stale", "exempt", "rule")


def is_filtered(data: dict[str, Any]) -> bool:
    return any(data.get(k) for k in FILTERS) or data.get("show") not in ("", "live", None)
