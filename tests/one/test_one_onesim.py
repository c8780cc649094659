"""OneClient against the OpenNebula simulator (idlevm.onesim) over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from idlevm.one import (
    IdleRecord,
    OneActionError,
    OneAuthenticationError,
    OneAuthorizationError,
    OneClient,
    OneError,
    OneInternalError,
    OneNoExistsError,
    OneTimeoutError,
    OneTransportError,
    format_host_idle,
    format_monitoring_idle,
    newest,
)

testing = pytest.importorskip("idlevm.onesim.testing")


@pytest.fixture
def sim() -> Iterator[Any]:
    with testing.running_simulator(hosts=3, vms=60, seed=1) as s:
        yield s


@pytest.fixture
def client(sim: Any) -> OneClient:
    return OneClient(sim.url, sim.session, connect_timeout=2, timeout=5, page_size=7)


def test_version_hosts_vms(sim: Any, client: OneClient) -> None:
    assert client.version() == "7.4.0"
    hosts = client.hosts()
    assert sorted(h.id for h in hosts) == sorted(sim.cloud.host_ids())
    vms = client.vms()
    ids = [vm.id for vm in vms]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(sim.cloud.vm_ids())
    on_hosts = {vm_id for h in hosts for vm_id in h.vm_ids}
    assert on_hosts <= set(ids)
    for vm in vms:
        if vm.id in on_hosts:
            assert vm.host_id is not None and vm.id in next(
                h.vm_ids for h in hosts if h.id == vm.host_id
            )


def test_paging_large_pool(sim: Any) -> None:
    for i in range(250):
        sim.cloud.allocate_vm(f"extra-{i}", state="ACTIVE", lcm_state="RUNNING")
    expected = {vm.id for vm in OneClient(sim.url, sim.session, page_size=100_000).vms()}
    client = OneClient(sim.url, sim.session, page_size=40)
    ids = [vm.id for vm in client.vms()]
    assert len(ids) == len(set(ids)) and set(ids) == expected and len(ids) > 300


def test_vm_and_vms_agree(sim: Any, client: OneClient) -> None:
    target = next(vm for vm in client.vms() if vm.host_id is not None)
    rec = IdleRecord(
        seq=3, time=1764001000, received=1764002000, idle=True, idle_since=1764000500, cpu=0.2
    )
    sim.cloud.set_vm_monitoring(target.id, format_monitoring_idle(rec))
    single = client.vm(target.id)
    from_pool = next(vm for vm in client.vms() if vm.id == target.id)
    assert single == from_pool
    assert single.idle is not None and single.idle.seq == 3 and single.idle.source == "vm"


def test_classic_idle_and_newest(sim: Any, client: OneClient) -> None:
    vm = next(vm for vm in client.vms() if vm.host_id is not None)
    assert vm.host_id is not None
    host_rec = IdleRecord(seq=9, time=1764001000, received=1764003000, idle=False)
    sim.cloud.set_host_template(vm.host_id, {"IDLE": format_host_idle({vm.id: host_rec})})
    vm_rec = IdleRecord(
        seq=10, time=1764001000, received=1764002999, idle=True, idle_since=1764000010
    )
    sim.cloud.set_vm_monitoring(vm.id, format_monitoring_idle(vm_rec))
    host = next(h for h in client.hosts() if h.id == vm.host_id)
    assert host.idle_problems == () and host.idle[vm.id].source == "host"
    chosen = newest(client.vm(vm.id).idle, host.idle[vm.id])
    assert chosen is not None and chosen.source == "host" and chosen.seq == 9


def test_hostile_idle_is_reported(sim: Any, client: OneClient) -> None:
    vm = next(vm for vm in client.vms() if vm.host_id is not None)
    sim.cloud.set_vm_monitoring(vm.id, {"IDLE_VERSION": "1", "IDLE_SEQ": "1e9"})
    got = client.vm(vm.id)
    assert got.idle is None and got.idle_problems[0].vm_id == vm.id


def test_errors(sim: Any, client: OneClient) -> None:
    with pytest.raises(OneNoExistsError):
        client.vm(999_999)
    with pytest.raises(OneAuthenticationError) as info:
        OneClient(sim.url, "oneadmin:wrong-password").version()
    assert "wrong-password" not in str(info.value)


def test_action_and_state_errors(sim: Any, client: OneClient) -> None:
    vm = next(vm for vm in client.vms() if vm.state_name == "ACTIVE" and vm.lcm_state == 3)
    client.vm_action("suspend", vm.id)
    assert client.vm(vm.id).state_name in ("SUSPENDED", "ACTIVE")
    with pytest.raises(OneActionError):
        client.vm_action("suspend", vm.id)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("FAULT", OneTransportError), ("HTTP_500", OneTransportError),
        ("AUTHORIZATION", OneAuthorizationError), ("INTERNAL", OneInternalError),
    ],
)  # fmt: skip
def test_injected_failures(sim: Any, client: OneClient, kind: str, cls: type[OneError]) -> None:
    sim.cloud.set_fault(fail=kind, calls=1, message=f"boom {sim.session}")
    with pytest.raises(cls) as info:
        client.version()
    assert sim.session.split(":")[1] not in str(info.value)
    assert client.version() == "7.4.0"  # the fault was for one call only


def test_slow_server_times_out(sim: Any) -> None:
    sim.cloud.set_fault(delay=2.0, calls=1)
    with pytest.raises(OneTimeoutError):
        OneClient(sim.url, sim.session, timeout=0.3).version()
