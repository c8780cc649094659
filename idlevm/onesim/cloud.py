"""The simulated cloud: state, queries with OpenNebula's filter rules, VM actions.

All public methods take the one lock, so the XML-RPC threads and test code may call them
concurrently. Lifecycle transitions are lazy: every call first applies the steps whose due
time has passed (computed from `clock`), so no timer thread is needed and tests can drive
time with a fake clock.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable

from idlevm.one.states import VM_STATES
from idlevm.onesim import lifecycle, xmlgen
from idlevm.onesim.inject import InjectMixin
from idlevm.onesim.model import (
    ACTION,
    ACTIVE,
    AUTHENTICATION,
    DONE,
    MONITORED,
    NO_EXISTS,
    XML_RPC_API,
    History,
    Host,
    OneError,
    Vm,
)

VERSION = "7.4.0"
MAX_VM_STATE = max(VM_STATES)  # CLONING_FAILURE: oned rejects larger state filters


class Cloud(InjectMixin):
    """A thread-safe simulated OpenNebula front-end (hosts and VMs)."""

    def __init__(
        self,
        hosts: list[Host],
        vms: list[Vm],
        *,
        auth: str = "oneadmin:secret",
        transition_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        list_order: str = "DESC",
        source: Callable[[], tuple[list[Host], list[Vm]]] | None = None,
    ) -> None:
        """hosts/vms are copied; `source`, if given, rebuilds them for reset() (cheaper
        than keeping a copy of a 50k-VM cloud)."""
        if list_order.upper() not in ("ASC", "DESC"):
            raise ValueError("list_order must be ASC or DESC")
        self.auth = auth
        self.transition_seconds = transition_seconds
        self.clock = clock
        self.descending = list_order.upper() == "DESC"
        self.lock = threading.RLock()
        if source is None:
            # A pickle is a cheap deep copy: the caller's objects and reset() stay apart.
            frozen = pickle.dumps((hosts, vms), protocol=pickle.HIGHEST_PROTOCOL)
            source = lambda: pickle.loads(frozen)  # noqa: E731
            hosts, vms = source()
        self._source = source
        self.hosts: dict[int, Host] = {}
        self.vms: dict[int, Vm] = {}
        self._moving: set[int] = set()
        self._load(hosts, vms)
        self.clear_fault()

    def _load(self, hosts: list[Host], vms: list[Vm]) -> None:
        self.hosts = {h.id: h for h in sorted(hosts, key=lambda h: h.id)}
        self.vms = {v.id: v for v in sorted(vms, key=lambda v: v.id)}
        # oned never reuses a VM id, even after the highest one is deleted.
        self.next_vm_id = max(self.vms, default=-1) + 1
        self._moving = {v.id for v in self.vms.values() if v.steps}
        for vm in self.vms.values():
            vm.touch()

    # ---------------------------------------------------------------- session, lookups

    def check_session(self, session: object) -> None:
        """oned authenticates every call; a wrong session is AUTHENTICATION."""
        if session != self.auth:
            raise OneError(AUTHENTICATION, "User couldn't be authenticated, aborting call.")

    @property
    def session_user(self) -> str:
        return self.auth.split(":", 1)[0]

    def _session_ids(self) -> tuple[int, int]:
        """(uid, primary gid) of the session user; oneadmin is 0/0 like in oned."""
        name = self.session_user
        for vm in self.vms.values():
            if vm.uname == name:
                return vm.uid, vm.gid
        return (0, 0) if name == "oneadmin" else (-1, -1)

    def _vm(self, vm_id: int) -> Vm:
        vm = self.vms.get(vm_id)
        if vm is None:
            raise OneError(NO_EXISTS, f"Error getting virtual machine [{vm_id}].", vm_id)
        return vm

    def _host(self, host_id: int) -> Host:
        host = self.hosts.get(host_id)
        if host is None:
            raise OneError(NO_EXISTS, f"Error getting host [{host_id}].", host_id)
        return host

    # ---------------------------------------------------------------- lifecycle

    def _advance(self) -> float:
        """Apply every lifecycle step that is due; return the current time."""
        now = self.clock()
        for vm_id in list(self._moving):
            vm = self.vms.get(vm_id)
            if vm is None:
                self._moving.discard(vm_id)
                continue
            while vm.steps and vm.step_due <= now:
                # A step happens at its due time, not when someone looks.
                self._enter(vm, vm.steps.pop(0), int(vm.step_due))
                vm.step_due += self.transition_seconds
            if not vm.steps:
                self._moving.discard(vm_id)
        return now

    def _start(self, vm: Vm, steps: list[lifecycle.Step], now: float) -> None:
        """Enter the first step now, queue the rest (all at once when transitions are 0)."""
        vm.steps = []
        self._moving.discard(vm.id)
        if self.transition_seconds <= 0:
            for step in steps:
                self._enter(vm, step, int(now))
            return
        if steps:
            self._enter(vm, steps[0], int(now))
            vm.steps = steps[1:]
            vm.step_due = now + self.transition_seconds
            if vm.steps:
                self._moving.add(vm.id)

    def _enter(self, vm: Vm, step: lifecycle.Step, now: int) -> None:
        state, lcm_state = step
        if lifecycle.opens_history(state, lcm_state) and (not vm.history or vm.history[-1].etime):
            self._deploy(vm, now)
        vm.prev_state, vm.prev_lcm_state = vm.state, vm.lcm_state
        vm.state, vm.lcm_state = state, lcm_state
        if state in lifecycle.OFF_HOST and vm.history and not vm.history[-1].etime:
            vm.history[-1].etime = now
        if state == DONE:
            vm.etime = now
        vm.touch()

    def _deploy(self, vm: Vm, now: int) -> None:
        """Open a new history record, as oned does on (re)deployment."""
        host = self._pick_host(vm)
        seq = vm.history[-1].seq + 1 if vm.history else 0
        vm.history.append(History(seq, host.id, host.name, now, uid=vm.uid, gid=vm.gid))

    def _pick_host(self, vm: Vm) -> Host:
        """A tiny scheduler: stay on the last host if it is fine, else the least loaded."""
        last = self.hosts.get(vm.host_id) if vm.host_id is not None else None
        if last is not None and last.state == MONITORED:
            return last
        load = {h: 0 for h in self.hosts}
        for other in self.vms.values():
            if other.holds_host() and other.host_id in load:
                load[other.host_id] += 1
        candidates = [h for h in self.hosts.values() if h.state == MONITORED] or list(
            self.hosts.values()
        )
        if not candidates:
            raise OneError(ACTION, "No host available to deploy the virtual machine")
        return min(candidates, key=lambda h: (load[h.id], h.id))

    # ---------------------------------------------------------------- one.* API

    def version(self) -> str:
        return VERSION

    def host_pool_xml(self) -> str:
        with self.lock:
            self._advance()
            per_host = self._vms_per_host()
            return xmlgen.host_pool(
                xmlgen.host(h, per_host.get(h.id, [])) for h in self.hosts.values()
            )

    def host_xml(self, host_id: int) -> str:
        with self.lock:
            self._advance()
            host = self._host(host_id)
            return xmlgen.host(host, self._vms_per_host().get(host_id, []))

    def _vms_per_host(self) -> dict[int, list[Vm]]:
        per_host: dict[int, list[Vm]] = {}
        for vm in self.vms.values():
            if vm.holds_host() and vm.host_id is not None:
                per_host.setdefault(vm.host_id, []).append(vm)
        return per_host

    def vm_xml(self, vm_id: int) -> str:
        with self.lock:
            self._advance()
            return xmlgen.unwire(xmlgen.vm_full_wire(self._vm(vm_id)))

    def vm_pool_xml(
        self, filter_flag: int, start: int, end: int, state: int, extended: bool
    ) -> str:
        """one.vmpool.info / infoextended with oned's argument rules."""
        return xmlgen.unwire(self.vm_pool_wire(filter_flag, start, end, state, extended))

    def vm_pool_wire(
        self, filter_flag: int, start: int, end: int, state: int, extended: bool
    ) -> str:
        """vm_pool_xml() already escaped for an XML-RPC <string>: what the server sends.

        Joining cached escaped fragments avoids re-escaping 100+ MB for a 50k pool.
        """
        if state < -2 or state > MAX_VM_STATE:
            raise OneError(XML_RPC_API, "Incorrect filter_flag, state")
        if filter_flag < -4:
            raise OneError(XML_RPC_API, "Incorrect filter_flag")
        render = xmlgen.vm_full_wire if extended else xmlgen.vm_short_wire
        with self.lock:
            self._advance()
            selected = self._select(filter_flag, start, end, state)
            return "".join([xmlgen.POOL_OPEN, *map(render, selected), xmlgen.POOL_CLOSE])

    def warm(self) -> None:
        """Render every VM's cached fragments now (keeps the first big pool call fast)."""
        with self.lock:
            for vm in self.vms.values():
                xmlgen.vm_full_wire(vm)
                xmlgen.vm_short_wire(vm)

    def _select(self, filter_flag: int, start: int, end: int, state: int) -> list[Vm]:
        owner = self._owner_filter(filter_flag)
        vms = [
            vm
            for vm in self.vms.values()
            if owner(vm)
            and (state == -2 or (vm.state != DONE if state == -1 else vm.state == state))
            # oned's oid_filter only applies when not paging (end >= -1) and start != -1.
            and (end < -1 or start == -1 or (vm.id >= start and (end == -1 or vm.id <= end)))
        ]
        if self.descending:  # oned.conf API_LIST_ORDER, "DESC" by default
            vms.reverse()
        if end < -1:  # paging: LIMIT start, -end over the ordered result
            offset = max(start, 0)
            vms = vms[offset : offset - end]
        return vms

    def _owner_filter(self, flag: int) -> Callable[[Vm], bool]:
        uid, gid = self._session_ids()
        if flag == -2:
            return lambda vm: True
        if flag == -3:
            return lambda vm: vm.uid == uid
        if flag == -4:
            return lambda vm: vm.gid == gid
        if flag == -1:  # mine and my groups' (per-object GROUP_U is not simulated)
            return lambda vm: vm.uid == uid or vm.gid == gid
        return lambda vm: vm.uid == flag

    def vm_action(self, action: str, vm_id: int) -> int:
        """one.vm.action: returns the VM id like oned, or raises OneError."""
        with self.lock:
            now = self._advance()
            if action not in lifecycle.RULES:
                raise OneError(ACTION, f'Virtual machine action "{action}" is not supported')
            vm = self._vm(vm_id)
            steps = lifecycle.plan(action, vm.state, vm.lcm_state)
            if steps is None:
                name = lifecycle.state_str(vm.state, vm.lcm_state)
                raise OneError(ACTION, f"This action is not available for state {name}", vm_id)
            if vm.history and not vm.history[-1].etime:
                vm.history[-1].action = lifecycle.ACTION_IDS[action]
            if action in ("resched", "unresched"):
                vm.resched = int(action == "resched")
            vm.touch()
            self._start(vm, steps, now)
            return vm_id

    # ---------------------------------------------------------------- helpers for tests

    def vm_state(self, vm_id: int) -> tuple[str, str]:
        """(STATE name, LCM_STATE name) of a VM, after applying due transitions."""
        from idlevm.one.states import LCM_STATES, VM_STATES

        with self.lock:
            self._advance()
            vm = self._vm(vm_id)
            return VM_STATES[vm.state], LCM_STATES.get(vm.lcm_state, str(vm.lcm_state))

    def placements(self) -> dict[int, int]:
        """{VM id: host id} of the VMs whose QEMU process runs (ACTIVE on a host): the VMs a
        KVM driver has prepared on that host (idlevm.onesim.probe plays that driver)."""
        with self.lock:
            self._advance()
            return {
                vm.id: vm.history[-1].hid
                for vm in self.vms.values()
                if vm.state == ACTIVE and vm.history
            }

    def host_names(self) -> dict[int, str]:
        with self.lock:
            return {host.id: host.name for host in self.hosts.values()}

    def vm_ids(self) -> list[int]:
        with self.lock:
            return list(self.vms)

    def host_ids(self) -> list[int]:
        with self.lock:
            return list(self.hosts)

    def reset(self) -> None:
        """Back to the state the cloud was created with; clears any fault."""
        with self.lock:
            self._load(*self._source())
            self.clear_fault()
