"""Test/demo injection on the simulated cloud (the onesim.* methods and their Python API).

Kept apart from cloud.py so the OpenNebula behaviour stays readable; Cloud inherits this.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

from idlevm.one.states import ERROR_CODES, HOST_BY_NAME, LCM_BY_NAME, VM_BY_NAME
from idlevm.onesim.model import (
    LCM_INIT,
    ON_HOST_STATES,
    Host,
    Template,
    Vm,
)

# OpenNebula upper-cases attribute names; they also become XML element names.
_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass
class Fault:
    """Makes later one.* calls slow and/or fail (timeouts, error handling tests)."""

    delay: float = 0.0
    fail: str | None = None  # an ERROR_CODES name, "FAULT" (XML-RPC fault) or "HTTP_500"
    calls: int = 0  # how many calls it affects; 0 = until cleared
    message: str = "Simulated failure"
    method: str | None = None  # only calls of this method (e.g. "one.vm.action"); None: all


def _keys(values: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        name = str(key).upper()
        if not _KEY.match(name):
            raise ValueError(f"invalid attribute name {key!r}")
        out[name] = "" if value is None else str(value)
    return out


def _state(value: str | int, table: dict[str, int]) -> int:
    if isinstance(value, int) and value in table.values():
        return value
    if isinstance(value, str) and value.upper() in table:
        return table[value.upper()]
    raise ValueError(f"unknown state {value!r}")


class InjectMixin:
    lock: threading.RLock
    vms: dict[int, Vm]
    next_vm_id: int
    hosts: dict[int, Host]
    _moving: set[int]
    _fault: Fault

    def _advance(self) -> float:
        raise NotImplementedError

    def _vm(self, vm_id: int) -> Vm:
        raise NotImplementedError

    def _host(self, host_id: int) -> Host:
        raise NotImplementedError

    def _deploy(self, vm: Vm, now: int) -> None:
        raise NotImplementedError

    def _enter(self, vm: Vm, step: tuple[int, int], now: int) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- monitoring, templates

    def set_vm_monitoring(
        self, vm_id: int, values: Mapping[str, object], replace: bool = False
    ) -> None:
        """Merge (or replace) MONITORING attributes; an empty value deletes the attribute."""
        new = _keys(values)
        with self.lock:
            now = self._advance()
            vm = self._vm(vm_id)
            merged = {} if replace else dict(vm.monitoring)
            merged.update(new)
            vm.monitoring = {k: v for k, v in merged.items() if v != ""}
            vm.last_poll = int(now)
            vm.touch()

    def set_host_template(self, host_id: int, values: Mapping[str, object]) -> None:
        """Set host TEMPLATE attributes (e.g. the classic IDLE); "" deletes one."""
        new = _keys(values)
        with self.lock:
            now = self._advance()
            host = self._host(host_id)
            host.template.update(new)
            host.template = {k: v for k, v in host.template.items() if v != ""}
            host.last_mon = int(now)

    def set_vm_state(self, vm_id: int, state: str | int, lcm_state: str | int = LCM_INIT) -> None:
        """Force a VM state (no transition, no checks), e.g. ACTIVE/UNKNOWN."""
        st = _state(state, VM_BY_NAME)
        lcm = _state(lcm_state, LCM_BY_NAME)
        with self.lock:
            now = int(self._advance())
            vm = self._vm(vm_id)
            vm.steps = []
            self._moving.discard(vm_id)
            self._enter(vm, (st, lcm), now)  # as if a transition ended there

    def set_host_state(self, host_id: int, state: str | int) -> None:
        st = _state(state, HOST_BY_NAME)
        with self.lock:
            self._advance()
            host = self._host(host_id)
            host.prev_state, host.state = host.state, st

    # ---------------------------------------------------------------- allocate, delete

    def allocate_vm(
        self,
        name: str | None = None,
        *,
        owner: str = "oneadmin",
        group: str | None = None,
        state: str | int = "PENDING",
        lcm_state: str | int = "LCM_INIT",
        cpu: float | str = 1,
        vcpu: int = 1,
        memory_mb: int = 1024,
        template: Template | None = None,
        user_template: Mapping[str, object] | None = None,
        monitoring: Mapping[str, object] | None = None,
    ) -> int:
        """Add a VM (next free id); a state that needs a host deploys it on one."""
        st = _state(state, VM_BY_NAME)
        lcm = _state(lcm_state, LCM_BY_NAME)
        with self.lock:
            now = int(self._advance())
            vm_id = self.next_vm_id
            self.next_vm_id += 1
            uid, gid, gname = self._user(owner, group)
            vm = Vm(
                id=vm_id, name=name or f"vm-{vm_id}", uid=uid, gid=gid, uname=owner,
                gname=gname, state=st, lcm_state=lcm, prev_state=st, prev_lcm_state=lcm,
                stime=now, last_poll=now, cpu=str(cpu), vcpu=int(vcpu),
                memory_mb=int(memory_mb), template=dict(template or {}),
                user_template=_keys(user_template or {}), monitoring=_keys(monitoring or {}),
            )  # fmt: skip
            if st in ON_HOST_STATES:
                self._deploy(vm, now)
            self.vms[vm_id] = vm
            return vm_id

    def _user(self, owner: str, group: str | None) -> tuple[int, int, str]:
        """(uid, gid, gname) for a user name, reusing ids already in the pool."""
        known = {vm.uname: (vm.uid, vm.gid, vm.gname) for vm in self.vms.values()}
        uid, gid, gname = known.get(owner) or (
            (0, 0, "oneadmin") if owner == "oneadmin" else
            (max((v[0] for v in known.values()), default=0) + 1, 1, "users")
        )  # fmt: skip
        if group is not None and group != gname:
            groups = {vm.gname: vm.gid for vm in self.vms.values()}
            gid = groups.get(group, max(groups.values(), default=99) + 1)
            gname = group
        return uid, gid, gname

    def delete_vm(self, vm_id: int) -> None:
        """Drop a VM from the pool entirely (like a DONE VM purged from the database)."""
        with self.lock:
            self._vm(vm_id)
            del self.vms[vm_id]
            self._moving.discard(vm_id)

    # ---------------------------------------------------------------- faults

    def set_fault(
        self,
        delay: float = 0.0,
        fail: str | None = None,
        calls: int = 0,
        message: str = "Simulated failure",
        method: str | None = None,
    ) -> None:
        """Make the next `calls` one.* calls (0 = all until cleared) slow and/or fail; with
        `method`, only calls of that method count and are affected."""
        if fail is not None and fail not in ERROR_CODES and fail not in ("FAULT", "HTTP_500"):
            raise ValueError(f"unknown failure kind {fail!r}")
        if delay < 0 or calls < 0:
            raise ValueError("delay and calls must not be negative")
        with self.lock:
            self._fault = Fault(delay, fail, calls, message, method)

    def clear_fault(self) -> None:
        with self.lock:
            self._fault = Fault()

    def take_fault(self, method: str = "") -> Fault:
        """The fault that applies to the one.* call being served (counts it down)."""
        with self.lock:
            fault = self._fault
            if fault.method is not None and fault.method != method:
                return Fault()
            if fault.calls:
                remaining = fault.calls - 1
                self._fault = replace(fault, calls=remaining) if remaining else Fault()
            return fault
