"""Every reply validates against the official 7.4.0 schemas."""

from __future__ import annotations

import xmlrpc.client
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from idlevm.onesim.testing import Simulator

# The repo is /work/main and the shared references sit beside it (also in CI).
XSD_DIR = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "opennebula" / "xsd"
) / "7.4.0"

NS = "{http://opennebula.org/XMLSchema}"
IDLE_HOST = "1;0:seq=17,ts=1764030000,rcv=1764030002,state=idle,since=1764020000,cpu=0.4"
IDLE_VM = {"IDLE_VERSION": "1", "IDLE_SEQ": "17", "IDLE_TIME": "1764030000",
           "IDLE_RECEIVED": "1764030002", "IDLE_STATE": "idle", "IDLE_CPU": "0.4"}  # fmt: skip

pytestmark = pytest.mark.skipif(
    not XSD_DIR.is_dir(), reason=f"OpenNebula reference schemas not found at {XSD_DIR}"
)


@cache
def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


def check(xml: str, name: str, drop_idle: bool = False) -> etree._Element:
    root = etree.fromstring(xml.encode())
    if drop_idle:  # vm.xsd closes MONITORING: IDLE_* (valid in real oned too) is off-schema
        for el in [e for e in root.iter() if str(e.tag).startswith("IDLE_")]:
            el.getparent().remove(el)
    for el in root.iter():
        el.tag = NS + el.tag
    s = schema(name)
    assert s.validate(root), f"{name}: {s.error_log}"
    return root


def call(rpc: xmlrpc.client.ServerProxy, session: str, method: str, *args: object) -> str:
    ok, value, code = rpc.__getattr__(method)(session, *args)
    assert ok and code == 0, value
    return str(value)


def inject_idle(sim: Simulator) -> None:
    for host_id in sim.cloud.host_ids():
        sim.cloud.set_host_template(host_id, {"IDLE": IDLE_HOST})
    for vm_id in sim.cloud.vm_ids()[::3]:
        sim.cloud.set_vm_monitoring(vm_id, IDLE_VM)


def test_scenario_covers_every_state_kind(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    root = etree.fromstring(call(rpc, sim.session, "one.vmpool.info", -2, -1, -1, -2).encode())
    kinds = {(vm.findtext("STATE"), vm.findtext("LCM_STATE")) for vm in root.iter("VM")}
    assert kinds >= {("3", "3"), ("8", "0"), ("5", "0"), ("1", "0"), ("2", "0"), ("3", "16"),
                     ("4", "0"), ("9", "0"), ("6", "0")}  # fmt: skip


def test_host_pool_and_host_validate(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    inject_idle(sim)
    root = check(call(rpc, sim.session, "one.hostpool.info"), "host_pool.xsd")
    assert len(root) == 5
    for host_id in sim.cloud.host_ids():
        host = check(call(rpc, sim.session, "one.host.info", host_id), "host.xsd")
        assert host.findtext(f"{NS}TEMPLATE/{NS}IDLE") == IDLE_HOST


@pytest.mark.parametrize("state", [-2, -1, 3, 6])
def test_vm_pools_validate(sim: Simulator, rpc: xmlrpc.client.ServerProxy, state: int) -> None:
    short = call(rpc, sim.session, "one.vmpool.info", -2, -1, -1, state)
    check(short, "vm_pool.xsd")
    full = call(rpc, sim.session, "one.vmpool.infoextended", -2, -1, -1, state)
    check(full, "vm_pool_extended.xsd")


def test_pools_with_idle_data_validate(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    inject_idle(sim)
    short = call(rpc, sim.session, "one.vmpool.info", -2, -1, -1, -2)
    assert "IDLE_" not in short  # the short body drops them, like oned
    check(short, "vm_pool.xsd")
    full = call(rpc, sim.session, "one.vmpool.infoextended", -2, -1, -1, -2)
    assert full.count("<IDLE_STATE>") == len(sim.cloud.vm_ids()[::3])
    check(full, "vm_pool_extended.xsd", drop_idle=True)


def test_vm_info_validates(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    for vm_id in sim.cloud.vm_ids():
        check(call(rpc, sim.session, "one.vm.info", vm_id), "vm.xsd")


def test_awkward_values_stay_well_formed(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    nasty = 'a]]>b<c>&d"e\x01f'
    sim.cloud.set_host_template(0, {"NOTE": nasty})
    sim.cloud.set_vm_monitoring(0, {"IDLE_NOTE": nasty})
    host = check(call(rpc, sim.session, "one.host.info", 0), "host.xsd")
    assert host.findtext(f"{NS}TEMPLATE/{NS}NOTE") == 'a]]>b<c>&d"ef'
    vm = etree.fromstring(call(rpc, sim.session, "one.vm.info", 0).encode())
    assert vm.findtext("MONITORING/IDLE_NOTE") == 'a]]>b<c>&d"ef'
