"""agent -> FIFO (made by prepare) -> probe (run by the simulator) -> XML-RPC -> service.

The real agent code writes into a FIFO that the simulator's KVM-driver role made with the
hook's own code; the simulator runs the real probe and serves the result over HTTP; the
suspension service collects it into the database. A hostile VM on the same host floods its
pipe with injections and claims to be its neighbour.
"""

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from django.core.management import call_command

from idlevm import protocol
from idlevm.inventory.models import VirtualMachine
from idlevm.one import OneClient
from idlevm.onesim.probe import ProbeRunner

REPO = Path(__file__).resolve().parents[2]


def signed(body):
    return f"{body} crc={zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}\n".encode()


@pytest.fixture
def runner(onesim, tmp_path):
    return ProbeRunner(onesim.cloud, tmp_path / "serial", interval=3600)


def two_running_vms_on_one_host(cloud):
    by_host = {}
    for vm_id, host_id in sorted(cloud.placements().items()):
        if cloud.vm_state(vm_id) == ("ACTIVE", "RUNNING"):
            by_host.setdefault(host_id, []).append(vm_id)
    host_id, vms = max(by_host.items(), key=lambda item: len(item[1]))
    return host_id, vms[0], vms[1]


@pytest.mark.django_db
def test_real_agent_data_reaches_the_service_and_a_hostile_neighbour_changes_nothing(
    onesim, one_settings, runner, tmp_path
):
    cloud = onesim.cloud
    host_id, honest, hostile = two_running_vms_on_one_host(cloud)
    host_dir = runner.host_dir(cloud.host_names()[host_id])
    first = runner.run_once()  # the driver role prepares every running VM's FIFOs
    assert first.problems == []
    assert all(
        (host_dir / f"one{vm}.{end}").exists() for vm in (honest, hostile) for end in ("in", "out")
    )

    # QEMU's ends of the pipes (it opens both FIFOs read-write and keeps them open).
    qemu = [os.open(host_dir / f"one{vm}.out", os.O_RDWR) for vm in (honest, hostile)]
    try:
        config = tmp_path / "agent.conf"
        config.write_text(f"[agent]\nLOG = {host_dir / f'one{honest}.out'}\n")
        agent = [sys.executable, "-m", "idlevm.agent", "--once", "--config", str(config)]
        subprocess.run(agent, cwd=REPO, check=True, timeout=60, capture_output=True)
        now = int(time.time())
        os.write(
            qemu[1],
            b'\x00\xff]" INJECT="1\n' + signed(f"IDLEVM1 seq=9 ts={now} state=busy vm={honest}"),
        )
        os.write(qemu[1], signed(f'IDLEVM1 seq=10 ts={now} state=idle since={now} cpu=0.1"'))
        second = runner.run_once()
    finally:
        for fd in qemu:
            os.close(fd)
    assert second.problems == [] and second.vm_records == 2

    # Both published paths, as OpenNebula serves them.
    client = OneClient(onesim.url, onesim.session)
    host = next(h for h in client.hosts() if h.id == host_id)
    assert host.idle_problems == () and set(host.idle) == {honest, hostile}
    assert {vm.id: vm.idle.seq for vm in client.vms() if vm.idle} == {honest: 0, hostile: 9}

    call_command("suspend_service", "--once")
    mine = VirtualMachine.objects.get(id=honest)
    assert mine.idle_seq == 0 and mine.idle is not None and mine.cpu_pct is not None
    assert abs(mine.idle_received.timestamp() - time.time()) < 120
    assert mine.idle_rejected == 0
    theirs = VirtualMachine.objects.get(id=hostile)
    assert (theirs.idle_seq, theirs.idle) == (9, False)
    assert theirs.idle_rejected == 2  # the injection line and the line with a quote
    others = VirtualMachine.objects.exclude(id__in=(honest, hostile))
    assert not others.filter(idle_seq__isnull=False).exists()


def test_suspended_vm_loses_its_fifos_and_its_old_record_is_not_published_again(onesim, runner):
    cloud = onesim.cloud
    host_id, vm_id, _ = two_running_vms_on_one_host(cloud)
    host_dir = runner.host_dir(cloud.host_names()[host_id])
    runner.run_once()
    qemu = os.open(host_dir / f"one{vm_id}.out", os.O_RDWR)
    try:
        now = int(time.time())
        os.write(qemu, protocol.encode({"seq": 1, "ts": now, "state": "idle", "since": now}))
        runner.run_once()
    finally:
        os.close(qemu)
    assert cloud.vms[vm_id].monitoring["IDLE_SEQ"] == "1"
    cloud.vm_action("suspend", vm_id)
    while cloud.vm_state(vm_id)[0] != "SUSPENDED":
        time.sleep(0.01)
    before = dict(cloud.vms[vm_id].monitoring)
    runner.run_once()
    assert not (host_dir / f"one{vm_id}.out").exists()
    cloud.vm_action("resume", vm_id)
    while cloud.vm_state(vm_id) != ("ACTIVE", "RUNNING"):
        time.sleep(0.01)
    runner.run_once()
    # New FIFOs, nothing written yet: nothing is published, and oned keeps the last values,
    # whose receive time (IDLE_RECEIVED) ages until the service calls them stale.
    assert (host_dir / f"one{vm_id}.out").exists()
    assert cloud.vms[vm_id].monitoring == before


def test_simulator_command_refuses_two_sources_of_idle_data(tmp_path):
    command = [
        sys.executable,
        "-m",
        "idlevm.onesim",
        "--idle-data",
        "5",
        "--fifo-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "choose one" in proc.stderr
