"""Argument conventions, filters, paging and the shape of failure replies."""

from __future__ import annotations

import xmlrpc.client

import pytest
from lxml import etree

from idlevm.onesim.testing import Simulator, build_cloud


def ids(rpc: xmlrpc.client.ServerProxy, session: str, *args: int) -> list[int]:
    ok, xml, _ = rpc.one.vmpool.info(session, *args)
    assert ok, xml
    return [int(e.text) for e in etree.fromstring(xml.encode()).iterfind("VM/ID")]


def test_order_is_descending_like_default_oned(
    sim: Simulator, rpc: xmlrpc.client.ServerProxy
) -> None:
    all_ids = sim.cloud.vm_ids()
    assert ids(rpc, sim.session, -2, -1, -1, -2) == sorted(all_ids, reverse=True)


def test_id_range(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    assert ids(rpc, sim.session, -2, 5, 9, -2) == [9, 8, 7, 6, 5]
    assert ids(rpc, sim.session, -2, 35, -1, -2) == [39, 38, 37, 36, 35]


def test_paging(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    everything = ids(rpc, sim.session, -2, -1, -1, -2)
    pages = [ids(rpc, sim.session, -2, off, -15, -2) for off in (0, 15, 30, 45)]
    assert pages[0] == everything[:15] and pages[3] == []
    assert [i for page in pages for i in page] == everything


def test_paging_ascending() -> None:
    cloud = build_cloud(hosts=2, vms=20, list_order="ASC")
    xml = cloud.vm_pool_xml(-2, 10, -5, -2, extended=False)
    assert [int(e.text) for e in etree.fromstring(xml).iterfind("VM/ID")] == [10, 11, 12, 13, 14]


def test_state_filter(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    states = {i: sim.cloud.vm_state(i)[0] for i in sim.cloud.vm_ids()}
    done = sorted((i for i, s in states.items() if s == "DONE"), reverse=True)
    assert done and ids(rpc, sim.session, -2, -1, -1, 6) == done
    not_done = ids(rpc, sim.session, -2, -1, -1, -1)
    assert not set(done) & set(not_done) and len(not_done) + len(done) == len(states)
    poweroff = sorted((i for i, s in states.items() if s == "POWEROFF"), reverse=True)
    assert ids(rpc, sim.session, -2, -1, -1, 8) == poweroff


def test_owner_filters(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    _, xml, _ = rpc.one.vmpool.info(sim.session, -2, -1, -1, -2)
    owners = {
        int(v.findtext("ID")): int(v.findtext("UID")) for v in etree.fromstring(xml).iter("VM")
    }
    alice = sorted((i for i, u in owners.items() if u == 2), reverse=True)
    assert alice and ids(rpc, sim.session, 2, -1, -1, -2) == alice
    mine = sorted((i for i, u in owners.items() if u == 0), reverse=True)
    assert ids(rpc, sim.session, -3, -1, -1, -2) == mine


@pytest.mark.parametrize(
    ("args", "message"),
    [((-5, -1, -1, -1), "Incorrect filter_flag"),
     ((-2, -1, -1, 12), "Incorrect filter_flag, state"),
     ((-2, -1, -1, -3), "Incorrect filter_flag, state")],
)  # fmt: skip
def test_bad_filter_arguments(
    sim: Simulator, rpc: xmlrpc.client.ServerProxy, args: tuple[int, ...], message: str
) -> None:
    reply = rpc.one.vmpool.info(sim.session, *args)
    assert reply == [False, f"[one.vmpool.info] {message}", 0x1000, -1, -1]


def test_failure_reply_is_five_elements_with_i8(sim: Simulator) -> None:
    body = xmlrpc.client.dumps((sim.session, 999), "one.vm.info").encode()
    transport = xmlrpc.client.Transport()
    conn = transport.make_connection(sim.url.split("/")[2])
    conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
    raw = conn.getresponse().read().decode()
    assert "<i8>-1</i8>" in raw
    (reply,), _ = xmlrpc.client.loads(raw)
    assert reply == [False, "[one.vm.info] Error getting virtual machine [999].", 0x400, 999, -1]


def test_success_reply_and_extra_filter_string(
    sim: Simulator, rpc: xmlrpc.client.ServerProxy
) -> None:
    reply = rpc.one.vmpool.info(sim.session, -2, -1, -1, -1, "")
    assert reply[0] is True and reply[2] == 0 and len(reply) == 3


def test_wrong_session_and_arguments(sim: Simulator, rpc: xmlrpc.client.ServerProxy) -> None:
    reply = rpc.one.hostpool.info("oneadmin:nope")
    assert reply[:3] == [
        False,
        "[one.hostpool.info] User couldn't be authenticated, aborting call.",
        0x100,
    ]
    with pytest.raises(xmlrpc.client.Fault):  # xmlrpc-c type error, as in oned
        rpc.one.vm.info(sim.session, "zero")
    with pytest.raises(xmlrpc.client.Fault):  # missing parameter
        rpc.one.vmpool.info(sim.session, -2, -1)
    with pytest.raises(xmlrpc.client.Fault, match="not defined"):
        rpc.one.vm.nosuch(sim.session)
    assert rpc.one.host.info(sim.session, 99)[:3] == [
        False,
        "[one.host.info] Error getting host [99].",
        0x400,
    ]
    bad_action = rpc.one.vm.action(sim.session, "explode", 0)
    assert bad_action[0] is False and bad_action[2] == 0x800
