"""The VM state machine: allowed/refused actions, transient states, host accounting."""

from __future__ import annotations

import time

import pytest

from idlevm.onesim.cloud import Cloud
from idlevm.onesim.model import OneError
from idlevm.onesim.testing import build_cloud, running_simulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def cloud_with(clock: FakeClock, transition: float = 2.0) -> tuple[Cloud, int]:
    cloud = build_cloud(hosts=2, vms=0, transition_seconds=transition, clock=clock)
    vm_id = cloud.allocate_vm("t", state="ACTIVE", lcm_state="RUNNING", memory_mb=2048)
    return cloud, vm_id


@pytest.mark.parametrize(
    ("action", "path"),
    [
        ("suspend", [("ACTIVE", "SAVE_SUSPEND"), ("SUSPENDED", "LCM_INIT")]),
        ("poweroff", [("ACTIVE", "SHUTDOWN_POWEROFF"), ("POWEROFF", "LCM_INIT")]),
        ("undeploy", [("ACTIVE", "SHUTDOWN_UNDEPLOY"), ("ACTIVE", "EPILOG_UNDEPLOY"),
                      ("UNDEPLOYED", "LCM_INIT")]),
        ("stop", [("ACTIVE", "SAVE_STOP"), ("ACTIVE", "EPILOG_STOP"), ("STOPPED", "LCM_INIT")]),
        ("terminate", [("ACTIVE", "SHUTDOWN"), ("ACTIVE", "EPILOG"), ("DONE", "LCM_INIT")]),
    ],
)  # fmt: skip
def test_transient_states_then_final(action: str, path: list[tuple[str, str]]) -> None:
    clock = FakeClock()
    cloud, vm_id = cloud_with(clock)
    cloud.vm_action(action, vm_id)
    for expected in path:
        assert cloud.vm_state(vm_id) == expected
        clock.now += 1.0
        assert cloud.vm_state(vm_id) == expected  # still there half-way
        clock.now += 1.0


@pytest.mark.parametrize(
    ("start", "path"),
    [
        ("SUSPENDED", ["BOOT_SUSPENDED", "RUNNING"]),
        ("POWEROFF", ["BOOT_POWEROFF", "RUNNING"]),
        ("STOPPED", ["LCM_INIT", "PROLOG_RESUME", "BOOT_STOPPED", "RUNNING"]),
        ("UNDEPLOYED", ["LCM_INIT", "PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "RUNNING"]),
    ],
)
def test_resume_paths(start: str, path: list[str]) -> None:
    clock = FakeClock()
    cloud, vm_id = cloud_with(clock)
    cloud.set_vm_state(vm_id, start)
    cloud.vm_action("resume", vm_id)
    seen = []
    for _ in path:
        seen.append(cloud.vm_state(vm_id)[1])
        clock.now += 2.0
    assert seen == path
    assert cloud.vm_state(vm_id) == ("ACTIVE", "RUNNING")


def test_hold_release_and_refusals() -> None:
    clock = FakeClock()
    cloud, vm_id = cloud_with(clock, transition=0)
    pending = cloud.allocate_vm("p")
    cloud.vm_action("hold", pending)
    assert cloud.vm_state(pending) == ("HOLD", "LCM_INIT")
    cloud.vm_action("release", pending)
    assert cloud.vm_state(pending) == ("PENDING", "LCM_INIT")
    for action in ("release", "suspend", "resume", "poweroff", "stop", "undeploy"):
        with pytest.raises(OneError, match="not available for state PENDING") as err:
            cloud.vm_action(action, pending)
        assert err.value.code == 0x800
    with pytest.raises(OneError, match="not available for state RUNNING"):
        cloud.vm_action("resume", vm_id)


def test_actions_refused_during_transition() -> None:
    clock = FakeClock()
    cloud, vm_id = cloud_with(clock)
    cloud.vm_action("suspend", vm_id)
    with pytest.raises(OneError, match="SAVE_SUSPEND"):
        cloud.vm_action("poweroff", vm_id)


def test_host_usage_and_history() -> None:
    clock = FakeClock()
    cloud, vm_id = cloud_with(clock, transition=0)
    host_id = cloud.vms[vm_id].host_id
    assert f"<ID>{vm_id}</ID></VMS>" in cloud.host_xml(host_id)
    assert "<MEM_USAGE>2097152</MEM_USAGE>" in cloud.host_xml(host_id)
    cloud.vm_action("poweroff", vm_id)  # oned keeps capacity while powered off
    assert "<MEM_USAGE>2097152</MEM_USAGE>" in cloud.host_xml(host_id)
    cloud.vm_action("undeploy", vm_id)
    assert "<MEM_USAGE>0</MEM_USAGE>" in cloud.host_xml(host_id)
    assert "<RUNNING_VMS>0</RUNNING_VMS>" in cloud.host_xml(host_id)
    clock.now += 10
    cloud.vm_action("resume", vm_id)
    vm = cloud.vms[vm_id]
    assert [h.seq for h in vm.history] == [0, 1]
    assert vm.history[0].etime == 1_800_000_000 and vm.history[0].action == 19
    cloud.vm_action("terminate", vm_id)
    assert cloud.vm_state(vm_id)[0] == "DONE" and vm.etime == 1_800_000_010


def test_transitions_visible_over_xmlrpc() -> None:
    import pyone

    with running_simulator(hosts=1, vms=0, transition_seconds=0.3) as sim:
        vm_id = sim.cloud.allocate_vm("x", state="ACTIVE", lcm_state="RUNNING")
        one = pyone.OneServer(sim.url, session=sim.session)
        one.vm.action("suspend", vm_id)
        assert (one.vm.info(vm_id).STATE, one.vm.info(vm_id).LCM_STATE) == (3, 6)
        time.sleep(0.4)
        assert one.vm.info(vm_id).STATE == 5
