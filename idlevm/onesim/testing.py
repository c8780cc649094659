"""Run the simulator inside a test or benchmark process.

with running_simulator(hosts=2, vms=10) as sim:
    server = pyone.OneServer(sim.url, session=sim.session)
    sim.cloud.set_vm_monitoring(3, {"IDLE_STATE": "idle"})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from idlevm.onesim import scenario as scenarios
from idlevm.onesim.cloud import Cloud
from idlevm.onesim.model import Host, Vm
from idlevm.onesim.server import OneSimServer


def build_cloud(
    hosts: int = 2,
    vms: int = 10,
    seed: int = 1,
    auth: str = "oneadmin:secret",
    transition_seconds: float = 0.0,
    scenario: str | Path | None = None,
    list_order: str = "DESC",
    clock: Callable[[], float] = time.time,
) -> Cloud:
    """A Cloud from a scenario file, or generated from (hosts, vms, seed)."""
    now = int(clock())

    def source() -> tuple[list[Host], list[Vm]]:
        # Deterministic (same seed and start time), so reset() can simply rebuild.
        if scenario is not None:
            return scenarios.load(scenario, now)
        return scenarios.generate(hosts, vms, seed, now)

    return Cloud(
        *source(), auth=auth, transition_seconds=transition_seconds, clock=clock,
        list_order=list_order, source=source,
    )  # fmt: skip


class Simulator:
    """An XML-RPC simulator served from a background thread (start()/stop())."""

    def __init__(self, cloud: Cloud, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cloud = cloud
        self._address = (host, port)
        self._server: OneSimServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.url

    @property
    def session(self) -> str:
        return self.cloud.auth

    def start(self) -> Self:
        self._server = OneSimServer(self.cloud, *self._address)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="onesim", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_simulator(
    hosts: int = 2,
    vms: int = 10,
    seed: int = 1,
    auth: str = "oneadmin:secret",
    transition_seconds: float = 0.0,
    scenario: str | Path | None = None,
) -> Iterator[Simulator]:
    """Serve a fresh simulated cloud on 127.0.0.1 (free port) for the `with` block.

    The yielded object has .url ("http://127.0.0.1:PORT/RPC2"), .session (the auth
    string) and .cloud (the Cloud, for injection).
    """
    cloud = build_cloud(hosts, vms, seed, auth, transition_seconds, scenario)
    sim = Simulator(cloud).start()
    try:
        yield sim
    finally:
        sim.stop()
