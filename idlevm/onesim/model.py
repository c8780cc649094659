"""In-memory objects of the simulated cloud: hosts, VMs, history records, API errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from idlevm.one.states import ERROR_CODES, HOST_BY_NAME, LCM_BY_NAME, VM_BY_NAME

AUTHENTICATION = ERROR_CODES["AUTHENTICATION"]
AUTHORIZATION = ERROR_CODES["AUTHORIZATION"]
NO_EXISTS = ERROR_CODES["NO_EXISTS"]
ACTION = ERROR_CODES["ACTION"]
XML_RPC_API = ERROR_CODES["XML_RPC_API"]
INTERNAL = ERROR_CODES["INTERNAL"]

# Short aliases used all over the simulator.
PENDING = VM_BY_NAME["PENDING"]
HOLD = VM_BY_NAME["HOLD"]
ACTIVE = VM_BY_NAME["ACTIVE"]
STOPPED = VM_BY_NAME["STOPPED"]
SUSPENDED = VM_BY_NAME["SUSPENDED"]
DONE = VM_BY_NAME["DONE"]
POWEROFF = VM_BY_NAME["POWEROFF"]
UNDEPLOYED = VM_BY_NAME["UNDEPLOYED"]
LCM_INIT = LCM_BY_NAME["LCM_INIT"]
RUNNING = LCM_BY_NAME["RUNNING"]
UNKNOWN = LCM_BY_NAME["UNKNOWN"]
MONITORED = HOST_BY_NAME["MONITORED"]

# States in which a VM keeps its host's capacity allocated. oned only releases capacity
# when the VM's files leave the host (stop, undeploy, terminate), not on poweroff/suspend.
ON_HOST_STATES = frozenset({ACTIVE, SUSPENDED, POWEROFF})

# A template value: a single attribute, a vector attribute, or several vectors of one name.
TemplateValue = str | dict[str, str] | list[dict[str, str]]
Template = dict[str, TemplateValue]


class OneError(Exception):
    """A failure OpenNebula reports in-band as [false, message, code, resp_id, idx]."""

    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


@dataclass
class History:
    """One HISTORY record: a stay of the VM on a host."""

    seq: int
    hid: int
    hostname: str
    stime: int
    etime: int = 0
    action: int = 0
    uid: int = -1
    gid: int = -1
    vm_mad: str = "kvm"
    tm_mad: str = "ssh"
    ds_id: int = 0
    cid: int = 0


@dataclass
class Host:
    id: int
    name: str
    state: int = MONITORED
    prev_state: int = MONITORED
    cores: int = 16
    memory_kb: int = 64 * 1024 * 1024
    im_mad: str = "kvm"
    vm_mad: str = "kvm"
    cluster_id: int = 0
    cluster: str = "default"
    template: dict[str, str] = field(default_factory=dict)
    last_mon: int = 0


@dataclass
class Vm:
    id: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    state: int = ACTIVE
    lcm_state: int = RUNNING
    prev_state: int = ACTIVE
    prev_lcm_state: int = RUNNING
    resched: int = 0
    stime: int = 0
    etime: int = 0
    last_poll: int = 0
    cpu: str = "1"
    vcpu: int = 1
    memory_mb: int = 1024
    template: Template = field(default_factory=dict)
    user_template: dict[str, str] = field(default_factory=dict)
    monitoring: dict[str, str] = field(default_factory=dict)
    history: list[History] = field(default_factory=list)
    # Lifecycle steps still to come, each (state, lcm_state); see lifecycle.py.
    steps: list[tuple[int, int]] = field(default_factory=list)
    step_due: float = 0.0
    # Cached wire-escaped XML fragments (xmlgen.*_wire); None means stale. Every mutation
    # must call touch().
    xml_full: str | None = None
    xml_short: str | None = None

    def touch(self) -> None:
        self.xml_full = None
        self.xml_short = None

    @property
    def deploy_id(self) -> str:
        return f"one-{self.id}" if self.history else ""

    @property
    def host_id(self) -> int | None:
        """The host the VM is on: the one of its last history record (as in oned)."""
        return self.history[-1].hid if self.history else None

    def holds_host(self) -> bool:
        return bool(self.history) and self.state in ON_HOST_STATES
