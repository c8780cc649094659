"""A stand-in for the host-side probe: publishes idle records for the simulated VMs.

Until real agents and the real probe run against the simulator (the demo issue), this gives
the demo and the benchmarks realistic MONITORING `IDLE_*` data in the published format
(docs/protocol.md, written with idlevm.one.idle's own formatter). Deterministic by VM id:
every third running VM is idle, every seventeenth has a dead agent (publishes nothing).
"""

from __future__ import annotations

import threading
import time

from idlevm.one.idle import format_monitoring_idle
from idlevm.one.records import IdleRecord
from idlevm.onesim.cloud import Cloud


class IdleFeeder:
    def __init__(self, cloud: Cloud, interval: float = 30.0) -> None:
        self.cloud = cloud
        self.interval = interval
        self._seq: dict[int, int] = {}
        self._since: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, vm_id: int, now: int) -> IdleRecord:
        seq = self._seq[vm_id] = self._seq.get(vm_id, -1) + 1
        idle = vm_id % 3 == 0
        since = self._since.setdefault(vm_id, now - 3600) if idle else None
        return IdleRecord(
            seq=seq, time=now, received=now, idle=idle, idle_since=since,
            cpu=0.4 if idle else 35.0, load=0.02 if idle else 1.6, disk=0.0 if idle else 5e5,
            net_rx=300.0 if idle else 2e5, net_tx=120.0 if idle else 8e4, sessions=0,
        )  # fmt: skip

    def publish_once(self, now: int | None = None) -> int:
        """One round over the running VMs; returns how many records were published."""
        now = int(time.time()) if now is None else now
        published = 0
        for vm_id in self.cloud.vm_ids():
            if vm_id % 17 == 0 or self.cloud.vm_state(vm_id) != ("ACTIVE", "RUNNING"):
                continue
            self.cloud.set_vm_monitoring(vm_id, format_monitoring_idle(self.record(vm_id, now)))
            published += 1
        return published

    def start(self) -> IdleFeeder:
        self._thread = threading.Thread(target=self._run, name="idle-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self.publish_once()
            if self._stop.wait(self.interval):
                return
