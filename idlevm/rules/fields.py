"""The names a rule reads for each VM: type, meaning, example, and how each is computed.

This table is the field reference (`docs/rules.md` is generated from it, see
`reference_markdown`). Idle fields follow one rule: without a record, or with one older
than IDLE_STALE_SECONDS, they are None (missing); see docs/rules.md for what a comparison
with None does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from idlevm.inventory.collect import FUTURE_SKEW_SECONDS
from idlevm.inventory.models import VirtualMachine
from idlevm.rules.types import BOOL, DATETIME, DURATION, FLOAT, INT, STR, Type

EXEMPT_ATTRIBUTE = "IDLEVM_EXEMPT"
FUTURE_SKEW = timedelta(seconds=FUTURE_SKEW_SECONDS)


@dataclass(frozen=True, slots=True)
class Context:
    """What every VM of one evaluation shares: the time, and when data counts as stale."""

    now: datetime  # aware, in the service's time zone
    stale_after: timedelta

    def fresh(self, vm: VirtualMachine) -> bool:
        """Received within the stale period; a host clock a little ahead (what collection
        accepts) still counts as fresh, not as stale."""
        received = vm.idle_received
        return received is not None and -FUTURE_SKEW <= self.now - received <= self.stale_after

    def at(self, now: datetime) -> Context:
        return Context(now=now.astimezone(self.now.tzinfo), stale_after=self.stale_after)


def is_exempt(vm: VirtualMachine) -> bool:
    """The VM's owner set IDLEVM_EXEMPT="YES" in its USER_TEMPLATE: never acted on."""
    value = (vm.user_template or {}).get(EXEMPT_ATTRIBUTE, "")
    return isinstance(value, str) and value.strip().upper() == "YES"


Getter = Callable[[VirtualMachine, Context], object]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Type
    meaning: str
    example: str
    get: Getter


def _fresh(get: Callable[[VirtualMachine, Context], object]) -> Getter:
    """An idle field: None unless the VM's idle record is fresh."""
    return lambda vm, ctx: get(vm, ctx) if ctx.fresh(vm) else None


def _attr(name: str) -> Getter:
    return lambda vm, ctx: getattr(vm, name)


def _idle_for(vm: VirtualMachine, ctx: Context) -> timedelta | None:
    if vm.idle is False:
        return timedelta(0)
    if vm.idle and vm.idle_since is not None:
        return max(timedelta(0), ctx.now - vm.idle_since)
    return None


def _input_age(vm: VirtualMachine, ctx: Context) -> timedelta | None:
    return None if vm.input_age is None else timedelta(seconds=vm.input_age)


def _age(vm: VirtualMachine, ctx: Context) -> timedelta | None:
    return None if vm.idle_received is None else max(timedelta(0), ctx.now - vm.idle_received)


def _uptime(vm: VirtualMachine, ctx: Context) -> timedelta | None:
    return None if vm.stime is None else ctx.now - vm.stime


def _n(kind: str) -> Type:
    return Type(kind, nullable=True)


def _signal(name: str, kind: str, meaning: str, example: str, column: str = "") -> Field:
    return Field(name, _n(kind), meaning, example, _fresh(_attr(column or name)))


FIELDS: dict[str, Field] = {
    f.name: f
    for f in [
        Field("id", Type(INT), "OpenNebula VM id", "id in (12, 13)", _attr("id")),
        Field("name", Type(STR), "VM name", 'name.startswith("test-")', _attr("name")),
        Field("owner", Type(STR), "owner's user name", 'owner == "alice"', _attr("owner")),
        Field("group", Type(STR), "owner's group name", 'group == "physics"', _attr("group")),
        Field("uid", Type(INT), "owner's user id", "uid != 0", _attr("uid")),
        Field("gid", Type(INT), "group id", "gid == 100", _attr("gid")),
        Field("host", Type(STR), 'host name ("" when not on a host)', 'host == "node07"',
              _attr("host_name")),
        Field("host_id", _n(INT), "host id (None when not on a host)", "host_id == 3",
              _attr("host_id")),
        Field("state", Type(STR), "OpenNebula state name", 'state == "ACTIVE"',
              _attr("state_name")),
        Field("lcm_state", Type(STR), "OpenNebula LCM state name", 'lcm_state == "RUNNING"',
              _attr("lcm_state_name")),
        Field("cpu", Type(FLOAT), "CPU allocated (TEMPLATE/CPU)", "cpu >= 4", _attr("cpu")),
        Field("vcpu", Type(INT), "virtual CPUs", "vcpu >= 8", _attr("vcpu")),
        Field("memory", Type(INT), "memory, MiB", "memory >= 16384", _attr("memory")),
        Field("started", _n(DATETIME), "when the VM started (STIME)",
              "started < now - days(30)", _attr("stime")),
        Field("uptime", _n(DURATION), "time since the VM started", "uptime > days(7)", _uptime),
        Field("exempt", Type(BOOL), 'owner set IDLEVM_EXEMPT="YES" (never acted on)',
              "not exempt", lambda vm, ctx: is_exempt(vm)),
        Field("stale", Type(BOOL), "no fresh idle data (missing, or older than the stale "
              "setting)", "stale and uptime > hours(1)", lambda vm, ctx: not ctx.fresh(vm)),
        Field("data_age", _n(DURATION), "age of the last idle record, fresh or not (None when "
              "there is none)", "data_age < minutes(10)", _age),
        Field("idle", _n(BOOL), "the agent's verdict: true when idle", "idle",
              _fresh(_attr("idle"))),
        Field("idle_for", _n(DURATION), "how long the VM has been idle (0 when busy)",
              "idle_for > hours(4)", _fresh(_idle_for)),
        Field("idle_since", _n(DATETIME), "when the current idle stretch began",
              "idle_since < now - days(1)", _fresh(_attr("idle_since"))),
        _signal("cpu_pct", FLOAT, "CPU busy, % of the VM's CPUs", "cpu_pct < 2"),
        _signal("steal_pct", FLOAT, "CPU steal, %", "steal_pct > 20"),
        _signal("load", FLOAT, "1-minute load average", "load < 0.1"),
        _signal("disk_bps", FLOAT, "disk bytes/s (read + write)", "disk_bps < 10000"),
        _signal("net_rx_bps", FLOAT, "network bytes/s received", "net_rx_bps < 2000"),
        _signal("net_tx_bps", FLOAT, "network bytes/s sent", "net_tx_bps < 1000"),
        _signal("sessions", INT, "logged-in user sessions", "sessions == 0"),
        Field("input_age", _n(DURATION), "time since the last keyboard input in a session",
              "input_age > hours(8)", _fresh(_input_age)),
        _signal("busy_procs", INT, "configured busy processes running", "busy_procs == 0"),
        _signal("gpu_pct", FLOAT, "GPU busy, % (None without a GPU)", "gpu_pct < 5"),
    ]
}  # fmt: skip

# Names that are not per VM: the time of the evaluation, and the reduced modules.
NOW = Field("now", Type(DATETIME), "the time of the evaluation, in the service's TIME_ZONE",
            "now.hour >= 20 or now.weekday() >= 5", lambda vm, ctx: ctx.now)  # fmt: skip
