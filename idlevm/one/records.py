"""Typed records for what the OpenNebula client returns.

Plain frozen dataclasses with slots: a 100k-VM pool is 100k of these, so they stay small
and carry no reference back to the XML they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idlevm.one.states import HOST_STATES, LCM_STATES, VM_STATES


@dataclass(frozen=True, slots=True)
class IdleRecord:
    """One published idle record (docs/protocol.md), already validated."""

    seq: int
    time: int  # agent clock, epoch seconds
    received: int  # host clock, epoch seconds: staleness is measured from this
    idle: bool
    idle_since: int | None = None  # agent clock; None when busy
    cpu: float | None = None
    steal: float | None = None
    load: float | None = None
    disk: float | None = None
    net_rx: float | None = None
    net_tx: float | None = None
    sessions: int | None = None
    input_age: int | None = None
    busy_procs: int | None = None
    gpu: float | None = None
    rejected: int = 0
    source: str = "vm"  # "vm" (MONITORING IDLE_*) or "host" (host template IDLE)


@dataclass(frozen=True, slots=True)
class IdleProblem:
    """A record that was rejected: which VM (if known), and why, in words for operators."""

    vm_id: int | None
    reason: str
    wrong_host: bool = False  # data for a VM OpenNebula does not place on that host


@dataclass(frozen=True, slots=True)
class Host:
    id: int
    name: str
    state: int
    cluster_id: int
    cluster: str
    total_cpu: int  # percent of one CPU x 100, as OpenNebula reports
    cpu_usage: int
    max_cpu: int
    total_mem: int  # KiB
    mem_usage: int
    max_mem: int
    running_vms: int
    vm_ids: tuple[int, ...]
    template: dict[str, str] = field(default_factory=dict)
    # Classic path: records from the template's IDLE attribute, by VM id.
    idle: dict[int, IdleRecord] = field(default_factory=dict)
    idle_problems: tuple[IdleProblem, ...] = ()

    @property
    def state_name(self) -> str:
        return HOST_STATES.get(self.state, f"STATE_{self.state}")


@dataclass(frozen=True, slots=True)
class VirtualMachine:
    id: int
    name: str
    uid: int
    uname: str
    gid: int
    gname: str
    state: int
    lcm_state: int
    stime: int
    etime: int
    last_poll: int
    host_id: int | None  # from the last HISTORY record; None if never deployed
    host_name: str | None
    cpu: float  # TEMPLATE/CPU
    vcpu: int  # TEMPLATE/VCPU (1 when absent, as OpenNebula assumes)
    memory: int  # TEMPLATE/MEMORY, MiB
    user_template: dict[str, str] = field(default_factory=dict)
    monitoring: dict[str, str] = field(default_factory=dict)  # scalar, non-IDLE_ attributes
    # Current path: the record from MONITORING IDLE_* (None when absent or rejected).
    idle: IdleRecord | None = None
    idle_problems: tuple[IdleProblem, ...] = ()

    @property
    def state_name(self) -> str:
        return VM_STATES.get(self.state, f"STATE_{self.state}")

    @property
    def lcm_state_name(self) -> str:
        return LCM_STATES.get(self.lcm_state, f"LCM_{self.lcm_state}")
