"""A simulated cloud whose VMs the tests place one by one, and the settings to reach it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from idlevm.one.idle import format_monitoring_idle
from idlevm.rules.models import Rule
from tests.inventory.factories import idle_record


@pytest.fixture
def sim() -> Iterator[Any]:
    """A simulator with two hosts and no VM yet (tests add them with `add_vm`)."""
    from idlevm.onesim.testing import running_simulator

    with running_simulator(hosts=2, vms=0, seed=3) as simulator:
        yield simulator


@pytest.fixture
def sim_settings(settings: Any, sim: Any, tmp_path: Any) -> Any:
    auth = tmp_path / "one_auth"
    auth.write_text(sim.session + "\n")
    settings.ONE_XMLRPC, settings.ONE_AUTH = sim.url, str(auth)
    settings.ONE_CONNECT_TIMEOUT, settings.ONE_TIMEOUT = 2.0, 5.0
    settings.IDLE_STALE_SECONDS = 900
    settings.RULES_DRY_RUN = False
    settings.MAX_ACTIONS_PER_CYCLE, settings.MAX_ACTIONS_PERCENT = 100, 100.0
    return settings


def idle_monitoring(hours: float = 5.0, age: float = 0.0, **kw: Any) -> dict[str, str]:
    """MONITORING IDLE_* attributes: idle for `hours`, received `age` seconds ago."""
    now = int(time.time() - age)
    rec = idle_record(received=now, time=now, idle_since=now - int(hours * 3600), **kw)
    return format_monitoring_idle(rec)


def busy_monitoring(age: float = 0.0) -> dict[str, str]:
    now = int(time.time() - age)
    rec = idle_record(received=now, time=now, seq=2, idle=False, idle_since=None, cpu=85.0)
    return format_monitoring_idle(rec)


def add_vm(sim: Any, name: str, monitoring: dict[str, str] | None = None, **kw: Any) -> int:
    """A RUNNING VM (unless `state`/`lcm_state` say otherwise) in the simulator."""
    kw.setdefault("state", "ACTIVE")
    kw.setdefault("lcm_state", "RUNNING" if kw["state"] == "ACTIVE" else "LCM_INIT")
    kw.setdefault("owner", "alice")
    return int(sim.cloud.allocate_vm(name, monitoring=monitoring or {}, **kw))


def state(sim: Any, vm_id: int) -> str:
    st, lcm = sim.cloud.vm_state(vm_id)
    return f"{st}/{lcm}"


def make_rule(**kw: Any) -> Rule:
    fields: dict[str, Any] = dict(
        name="suspend-idle", expression="idle and idle_for > hours(4)", action="suspend",
        dry_run=False, all_vms=True, max_actions_per_cycle=10,
    )  # fmt: skip
    fields.update(kw)
    rule = Rule(**fields)
    rule.full_clean()
    rule.save()
    return rule
