"""XML bodies to records: realistic 7.4 and 3.2 XML, strictness, bounds, idle data."""

from __future__ import annotations

import gc

import one_xml
import pytest

from idlevm.one.errors import OneParseError
from idlevm.one.idle import format_host_idle, format_monitoring_idle
from idlevm.one.parse import (
    MAX_ATTRS,
    MAX_VALUE_CHARS,
    parse_host,
    parse_host_pool,
    parse_vm,
    parse_vm_pool,
)
from idlevm.one.records import IdleRecord

IDLE = IdleRecord(
    seq=4, time=1764001000, received=1764001005, idle=True, idle_since=1764000100, cpu=0.5
)


def test_vm_fields() -> None:
    xml = one_xml.vm(
        12,
        name="web &amp; db",
        histories=[(0, 1, "node1"), (2, 4, "node4"), (1, 3, "node3")],
        user_template={"OWNER_EMAIL": "a@example.org"},
    )
    vm = parse_vm(xml)
    assert (vm.id, vm.name, vm.uid, vm.uname, vm.gid, vm.gname) == (
        12, "web & db", 2, "alice", 1, "users",
    )  # fmt: skip
    assert (vm.state, vm.lcm_state, vm.state_name, vm.lcm_state_name) == (3, 3, "ACTIVE", "RUNNING")
    assert (vm.stime, vm.etime, vm.last_poll) == (1764000000, 0, 1764030001)
    assert (vm.host_id, vm.host_name) == (4, "node4")  # greatest SEQ, not the last listed
    assert (vm.cpu, vm.vcpu, vm.memory) == (0.5, 2, 2048)
    assert vm.user_template["OWNER_EMAIL"] == "a@example.org"
    assert vm.monitoring["CPU"] == "1.5" and vm.idle is None and vm.idle_problems == ()


def test_vm_defaults_and_never_deployed() -> None:
    vm = parse_vm(one_xml.vm(1, vcpu=None, histories=[], state=1, lcm_state=0))
    assert vm.vcpu == 1 and vm.host_id is None and vm.host_name is None


def test_vm_32_era() -> None:
    vm = parse_vm(one_xml.VM_32)
    assert (vm.id, vm.host_id, vm.host_name, vm.cpu, vm.memory) == (7, 3, "fcl001", 1.0, 512)
    assert vm.user_template == {} and vm.monitoring == {} and vm.idle is None


def test_host_32_era_with_classic_idle() -> None:
    host = parse_host(one_xml.HOST_32)
    assert (host.id, host.name, host.cluster_id, host.cluster) == (3, "fcl001", -1, "")
    assert (host.total_cpu, host.total_mem, host.running_vms) == (400, 8388608, 1)
    assert host.vm_ids == () and "IDLE" not in host.template
    assert host.idle[7].idle_since == 1329990000 and host.idle_problems == ()


def test_host_pool_and_idle() -> None:
    idle = format_host_idle({10: IDLE, 99: IDLE})
    xml = one_xml.host_pool(
        [one_xml.host(0, vm_ids=[10, 11], template={"IDLE": idle}), one_xml.host(1, state=4)]
    )
    h0, h1 = parse_host_pool(xml)
    assert (h0.id, h0.name, h0.state_name, h0.cluster_id, h0.cluster) == (
        0, "node0", "MONITORED", 0, "default",
    )  # fmt: skip
    assert (h0.total_cpu, h0.cpu_usage, h0.max_cpu) == (800, 100, 800)
    assert (h0.total_mem, h0.mem_usage, h0.max_mem, h0.running_vms) == (
        16777216, 2097152, 16777216, 2,
    )  # fmt: skip
    assert h0.vm_ids == (10, 11)
    assert h0.template["ARCH"] == "x86_64" and "RESERVED" not in h0.template
    assert "IDLE" not in h0.template
    assert list(h0.idle) == [10] and h0.idle[10].source == "host"
    assert [p.vm_id for p in h0.idle_problems] == [99]  # 99 is not on host 0
    assert h1.state_name == "DISABLED" and h1.idle == {}


def test_monitoring_idle_path() -> None:
    vm = parse_vm(one_xml.vm(5, monitoring=format_monitoring_idle(IDLE)))
    assert vm.idle is not None and vm.idle.source == "vm" and vm.idle.seq == 4
    assert not any(k.startswith("IDLE_") for k in vm.monitoring)
    assert vm.monitoring["CPU"] == "1.5"


def test_monitoring_idle_bad_value() -> None:
    mon = {**format_monitoring_idle(IDLE), "IDLE_CPU": "9" * 5000}
    vm = parse_vm(one_xml.vm(5, monitoring=mon))
    assert vm.idle is None and vm.idle_problems[0].vm_id == 5
    assert "IDLE_CPU" in vm.idle_problems[0].reason


def test_monitoring_idle_duplicate_name() -> None:
    xml = one_xml.vm(5, monitoring=format_monitoring_idle(IDLE)).replace(
        "<MONITORING>", "<MONITORING><IDLE_SEQ>9</IDLE_SEQ>"
    )
    vm = parse_vm(xml)
    assert vm.idle is None and "twice" in vm.idle_problems[0].reason


def test_pool_streams_all_and_skips_nested_vm() -> None:
    nested = "<VM><ID>not-a-pool-entry</ID></VM>"
    xml = one_xml.vm_pool(
        one_xml.vm(i, user_template={"X": "y"}, extra_template=nested) for i in range(50)
    )
    vms = list(parse_vm_pool(xml))
    assert [v.id for v in vms] == list(range(50))
    assert vms[10] == parse_vm(one_xml.vm(10, user_template={"X": "y"}, extra_template=nested))


def test_pool_accepts_bytes_and_declaration() -> None:
    body = one_xml.vm_pool([one_xml.vm(1)])
    decl = '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    assert [v.id for v in parse_vm_pool(body.encode())] == [1]
    assert [v.id for v in parse_vm_pool(decl + body)] == [1]
    assert list(parse_vm_pool("<VM_POOL/>")) == []


@pytest.mark.parametrize(
    ("xml", "needle"),
    [
        (one_xml.vm(1).replace("<ID>1</ID>", "<ID>x1</ID>", 1), "ID"),
        (one_xml.vm(1).replace("<ID>1</ID>", "<ID/>", 1), "ID"),
        (one_xml.vm(1).replace("<STATE>3</STATE>", "<STATE>3.0</STATE>"), "STATE"),
        (one_xml.vm(1).replace("<STATE>3</STATE>", ""), "STATE"),
        (one_xml.vm(1).replace("<HID>1</HID>", "<HID>one</HID>"), "HID"),
        (one_xml.vm(1, cpu="lots"), "CPU"),
        (one_xml.vm(1, cpu="nan"), "CPU"),
        (one_xml.vm(1, vcpu="2x"), "VCPU"),
    ],
)
def test_vm_bad_types(xml: str, needle: str) -> None:
    with pytest.raises(OneParseError, match=needle):
        parse_vm(xml)
    with pytest.raises(OneParseError, match=needle):
        list(parse_vm_pool(one_xml.vm_pool([xml])))


@pytest.mark.parametrize(
    "xml", ["", "<VM_POOL>", "<VM_POOL><VM><ID>1</VM></VM_POOL>", "not xml", "<HOST_POOL/>"]
)
def test_pool_malformed(xml: str) -> None:
    with pytest.raises(OneParseError):
        list(parse_vm_pool(xml))


def test_wrong_root() -> None:
    with pytest.raises(OneParseError, match="HOST_POOL"):
        parse_host_pool(one_xml.vm_pool([]))
    with pytest.raises(OneParseError, match="<VM>"):
        parse_vm(one_xml.host(1))


def test_host_bad_vm_id() -> None:
    with pytest.raises(OneParseError, match="VMS/ID"):
        parse_host(one_xml.host(1, vm_ids=[1]).replace("<ID>1</ID></VMS>", "<ID>a</ID></VMS>"))


def test_entities_not_expanded_and_no_network() -> None:
    xxe = (
        '<!DOCTYPE VM [<!ENTITY x SYSTEM "file:///etc/passwd">'
        '<!ENTITY y "expanded">]>' + one_xml.vm(1, user_template={"A": "B"})
    ).replace("<![CDATA[B]]>", "&x;&y;")
    value = parse_vm(xxe).user_template.get("A", "")
    assert "root:" not in value and "expanded" not in value


def test_template_bounds() -> None:
    many = {f"K{i:04d}": "v" for i in range(MAX_ATTRS + 50)}
    many["BIG"] = "x" * (MAX_VALUE_CHARS + 1)
    vm = parse_vm(one_xml.vm(1, user_template=many))
    assert len(vm.user_template) == MAX_ATTRS
    assert "BIG" not in vm.user_template


def test_pool_elements_are_freed() -> None:
    """After a VM is converted its element is cleared: records hold no tree."""
    vms = list(parse_vm_pool(one_xml.vm_pool(one_xml.vm(i) for i in range(100))))
    gc.collect()
    assert len(vms) == 100 and not hasattr(vms[0], "__dict__")


def test_one_vm_with_a_huge_user_template_value_does_not_sink_the_page() -> None:
    # Over libxml2's default 10 MB text-node limit: the value is dropped, the pool parses.
    huge = one_xml.vm(1, user_template={"BLOB": "x" * (11 * 2**20), "TEAM": "physics"})
    vms = list(parse_vm_pool(one_xml.vm_pool([huge, one_xml.vm(2)])))
    assert [v.id for v in vms] == [1, 2]
    assert "BLOB" not in vms[0].user_template and vms[0].user_template["TEAM"] == "physics"


def test_one_vm_cannot_make_us_store_more_than_the_dict_budget() -> None:
    from idlevm.one.parse import MAX_DICT_CHARS

    many = {f"K{i:03d}": "v" * 4000 for i in range(150)}  # ~600 KB of user template
    (vm,) = parse_vm_pool(one_xml.vm_pool([one_xml.vm(1, user_template=many)]))
    stored = sum(len(k) + len(v) for k, v in vm.user_template.items())
    assert 0 < stored <= MAX_DICT_CHARS


def test_the_dict_budget_counts_json_escaped_size() -> None:
    import json

    from idlevm.one.parse import MAX_DICT_CHARS

    emoji = {f"K{i:03d}": "\U0001f600" * 1000 for i in range(20)}
    (vm,) = parse_vm_pool(one_xml.vm_pool([one_xml.vm(1, user_template=emoji)]))
    assert len(json.dumps(vm.user_template)) <= MAX_DICT_CHARS + 200  # JSON punctuation
