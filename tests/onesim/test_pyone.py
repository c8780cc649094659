"""OpenNebula's own Python bindings talk to the simulator like to a real oned."""

from __future__ import annotations

import pyone
import pytest

from idlevm.onesim.testing import Simulator


@pytest.fixture
def one(sim: Simulator) -> pyone.OneServer:
    return pyone.OneServer(sim.url, session=sim.session)


def _running_vm(sim: Simulator) -> int:
    return next(i for i in sim.cloud.vm_ids() if sim.cloud.vm_state(i) == ("ACTIVE", "RUNNING"))


def test_lists_hosts_and_vms(sim: Simulator, one: pyone.OneServer) -> None:
    hosts = one.hostpool.info()
    assert [h.NAME for h in hosts.HOST] == [f"node0{i}" for i in range(1, 6)]
    assert one.system.version() == "7.4.0"
    full = one.vmpool.infoextended(-2, -1, -1, -1)
    short = one.vmpool.info(-2, -1, -1, -1)
    not_done = [i for i in sim.cloud.vm_ids() if sim.cloud.vm_state(i)[0] != "DONE"]
    assert sorted(vm.ID for vm in full.VM) == not_done
    assert sorted(vm.ID for vm in short.VM) == not_done
    vm = full.VM[0]
    assert vm.TEMPLATE["MEMORY"] and vm.TEMPLATE["VCPU"]


def test_vm_info_and_action(sim: Simulator, one: pyone.OneServer) -> None:
    vm_id = _running_vm(sim)
    vm = one.vm.info(vm_id)
    assert (vm_id, 3, 3) == (vm.ID, vm.STATE, vm.LCM_STATE)
    assert vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME.startswith("node")
    assert one.vm.action("suspend", vm_id) == vm_id
    assert one.vm.info(vm_id).STATE == 5
    assert one.vm.action("resume", vm_id) == vm_id
    after = one.vm.info(vm_id)
    assert (after.STATE, after.LCM_STATE) == (3, 3)
    assert len(after.HISTORY_RECORDS.HISTORY) == 2


def test_errors_map_to_pyone_exceptions(sim: Simulator, one: pyone.OneServer) -> None:
    with pytest.raises(pyone.OneAuthenticationException):
        pyone.OneServer(sim.url, session="oneadmin:wrong").vmpool.info(-2, -1, -1, -1)
    with pytest.raises(pyone.OneNoExistsException, match=r"virtual machine \[4242\]"):
        one.vm.info(4242)
    held = next(i for i in sim.cloud.vm_ids() if sim.cloud.vm_state(i)[0] == "HOLD")
    with pytest.raises(pyone.OneActionException, match="not available for state HOLD"):
        one.vm.action("suspend", held)
    with pytest.raises(pyone.OneApiException):
        one.vmpool.info(-5, -1, -1, -1)
