"""The onesim.* injection methods and faults."""

from __future__ import annotations

import time
import xmlrpc.client

import pytest
from lxml import etree

from idlevm.onesim.testing import Simulator


def xml(rpc: xmlrpc.client.ServerProxy, session: str, method: str, *args: object) -> etree._Element:
    ok, value, _ = getattr(rpc, method)(session, *args)
    assert ok, value
    return etree.fromstring(value.encode())


def test_vm_monitoring_merge_replace_delete(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    assert rpc.onesim.vm.monitoring(sim.session, 0, {"IDLE_STATE": "idle", "IDLE_SEQ": 4})[0]
    mon = xml(rpc, sim.session, "one.vm.info", 0).find("MONITORING")
    assert mon.findtext("IDLE_STATE") == "idle" and mon.findtext("IDLE_SEQ") == "4"
    assert mon.findtext("CPU") is not None  # merged, not replaced
    rpc.onesim.vm.monitoring(sim.session, 0, {"IDLE_STATE": ""})
    mon = xml(rpc, sim.session, "one.vm.info", 0).find("MONITORING")
    assert mon.find("IDLE_STATE") is None and mon.findtext("IDLE_SEQ") == "4"
    rpc.onesim.vm.monitoring(sim.session, 0, {"IDLE_SEQ": "5"}, True)
    mon = xml(rpc, sim.session, "one.vm.info", 0).find("MONITORING")
    assert [e.tag for e in mon] == ["IDLE_SEQ"]


def test_host_template_and_states(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    rpc.onesim.host.template(sim.session, 1, {"IDLE": "1;3:seq=1"})
    assert xml(rpc, sim.session, "one.host.info", 1).findtext("TEMPLATE/IDLE") == "1;3:seq=1"
    rpc.onesim.host.template(sim.session, 1, {"IDLE": ""})
    assert xml(rpc, sim.session, "one.host.info", 1).find("TEMPLATE/IDLE") is None
    rpc.onesim.host.state(sim.session, 1, "ERROR")
    host = xml(rpc, sim.session, "one.host.info", 1)
    assert (host.findtext("STATE"), host.findtext("PREV_STATE")) == ("3", "2")
    rpc.onesim.vm.state(sim.session, 0, "ACTIVE", "UNKNOWN")
    vm = xml(rpc, sim.session, "one.vm.info", 0)
    assert (vm.findtext("STATE"), vm.findtext("LCM_STATE")) == ("3", "16")
    with pytest.raises(xmlrpc.client.Fault, match="unknown state"):
        rpc.onesim.vm.state(sim.session, 0, "NAPPING")


def test_allocate_and_delete(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    ok, vm_id, _ = rpc.onesim.vm.allocate(
        sim.session, {"name": "new", "owner": "zoe", "state": "ACTIVE", "lcm_state": "RUNNING"}
    )
    assert ok and vm_id == 40
    vm = xml(rpc, sim.session, "one.vm.info", vm_id)
    assert vm.findtext("UNAME") == "zoe" and vm.findtext("HISTORY_RECORDS/HISTORY/HOSTNAME")
    rpc.onesim.vm.delete(sim.session, vm_id)
    assert rpc.one.vm.info(sim.session, vm_id)[2] == 0x400
    pool = xml(rpc, sim.session, "one.vmpool.info", -2, -1, -1, -2)
    assert str(vm_id) not in [e.text for e in pool.iterfind("VM/ID")]


def test_onesim_needs_the_session(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    assert rpc.onesim.reset("bad:session")[2] == 0x100


def test_faults(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    rpc.onesim.fault(sim.session, {"fail": "INTERNAL", "calls": 1})
    assert rpc.one.hostpool.info(sim.session)[:3] == [
        False,
        "[one.hostpool.info] Simulated failure",
        0x2000,
    ]
    assert rpc.one.hostpool.info(sim.session)[0] is True  # only one call affected
    rpc.onesim.fault(sim.session, {"delay": 0.3, "calls": 1})
    start = time.monotonic()
    rpc.one.system.version(sim.session)
    assert time.monotonic() - start >= 0.3
    rpc.onesim.fault(sim.session, {"fail": "HTTP_500"})
    with pytest.raises(xmlrpc.client.ProtocolError):
        rpc.one.system.version(sim.session)
    assert rpc.onesim.reset(sim.session)[0] is True  # onesim.* is never faulted; reset clears
    assert rpc.one.system.version(sim.session) == [True, "7.4.0", 0]


def test_reset_restores_initial_cloud(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    before = rpc.one.vmpool.infoextended(sim.session, -2, -1, -1, -2)[1]
    sim.cloud.set_vm_monitoring(1, {"IDLE_STATE": "busy"})
    sim.cloud.delete_vm(2)
    rpc.onesim.reset(sim.session)
    assert rpc.one.vmpool.infoextended(sim.session, -2, -1, -1, -2)[1] == before


def test_ids_are_never_reused_after_the_highest_vm_is_deleted() -> None:
    from idlevm.onesim.testing import build_cloud

    cloud = build_cloud(hosts=1, vms=5)
    highest = max(cloud.vm_ids())
    cloud.delete_vm(highest)
    assert cloud.allocate_vm("fresh") == highest + 1
