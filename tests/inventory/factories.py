"""Client records (what idlevm.one returns) built directly, for tests of the storing logic."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from idlevm.one.records import Host, IdleRecord, VirtualMachine


def host(id: int, **kw: Any) -> Host:
    base: dict[str, Any] = dict(
        name=f"node{id}", state=2, cluster_id=0, cluster="default", total_cpu=800,
        cpu_usage=200, max_cpu=800, total_mem=16 << 20, mem_usage=4 << 20, max_mem=16 << 20,
        running_vms=0, vm_ids=(),
    )  # fmt: skip
    base.update(kw)
    return Host(id=id, **base)


def idle_record(received: int | None = None, **kw: Any) -> IdleRecord:
    now = int(time.time())
    base: dict[str, Any] = dict(
        seq=1, time=now - 5, received=now if received is None else received, idle=True,
        idle_since=now - 3605, cpu=0.5, net_rx=100.0, net_tx=50.0,
    )  # fmt: skip
    base.update(kw)
    return IdleRecord(**base)


def vm(id: int, host_id: int | None = 0, **kw: Any) -> VirtualMachine:
    base: dict[str, Any] = dict(
        name=f"vm{id}", uid=1, uname="alice", gid=1, gname="users", state=3, lcm_state=3,
        stime=int(time.time()) - 86400, etime=0, last_poll=0, host_id=host_id,
        host_name=None if host_id is None else f"node{host_id}", cpu=1.0, vcpu=2, memory=2048,
    )  # fmt: skip
    base.update(kw)
    return VirtualMachine(id=id, **base)


@dataclass
class StaticSource:
    """A PoolSource returning fixed records (the simulator tests cover the HTTP side)."""

    host_list: list[Host] = field(default_factory=list)
    vm_list: list[VirtualMachine] = field(default_factory=list)

    def hosts(self) -> list[Host]:
        return self.host_list

    def vms(self) -> list[VirtualMachine]:
        return self.vm_list

    def with_vm(self, new: VirtualMachine) -> StaticSource:
        others = [v for v in self.vm_list if v.id != new.id]
        return replace(self, vm_list=[*others, new])
