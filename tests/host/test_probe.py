"""The probe drains real FIFOs held open by real writer processes, and prints data the
service's own parsers accept."""

import base64
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idlevm import protocol
from idlevm.host import probe
from idlevm.one.idle import parse_host_idle, parse_monitoring_idle
from idlevm.one.template import parse_template

REPO = Path(__file__).resolve().parents[2]
# Stands in for QEMU: opens the FIFO read-write (as QEMU's pipe chardev does), writes what
# it is given on stdin, then holds the FIFO open until killed.
HOLDER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
data = sys.stdin.buffer.read()
if data:
    os.write(fd, data)
print("ready", flush=True)
sys.stdin.close()
import time
time.sleep(3600)
"""


@pytest.fixture
def fifo_dir(tmp_path):
    path = tmp_path / "vm_serial"
    path.mkdir(mode=0o750)
    os.chmod(path, 0o750)
    return path


@pytest.fixture
def writers():
    procs = []

    def start(path, data=b""):
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        proc.stdin.write(data)
        proc.stdin.close()
        assert proc.stdout.readline() == b"ready\n"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def make_fifo(fifo_dir, vm_id):
    path = fifo_dir / f"one{vm_id}.out"
    os.mkfifo(path, 0o660)
    return path


def line(seq=1, state="idle", **fields):
    now = int(time.time())
    record = {"seq": seq, "ts": now, "state": state, **fields}
    if state == "idle":
        record.setdefault("since", now - 600)
    return protocol.encode(record)


def run_probe(fifo_dir, fmt, state_dir=None):
    command = [sys.executable, "-m", "idlevm.host.probe", "--dir", str(fifo_dir), "--format", fmt]
    if state_dir:
        command += ["--state-dir", str(state_dir)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc


def host_records(fifo_dir, host_vm_ids=None):
    """Parse the probe's host output the way the service does: template, then IDLE."""
    out = run_probe(fifo_dir, "host").stdout
    attrs = parse_template(out)
    assert [name for name, _ in attrs] == ["IDLE"]
    return parse_host_idle(attrs[0][1], host_vm_ids)


def vm_records(fifo_dir):
    out = run_probe(fifo_dir, "vm").stdout
    records = {}
    for name, vector in parse_template(out):
        assert name == "VM"
        assert vector["DEPLOY_ID"] == f"one-{vector['ID']}"
        monitor = dict(parse_template(base64.b64decode(vector["MONITOR"]).decode("ascii")))
        record, problems = parse_monitoring_idle(monitor, int(vector["ID"]))
        assert problems == []
        records[int(vector["ID"])] = record
    return records


def test_agents_lines_reach_both_formats_with_the_fifo_vm_id(fifo_dir, writers):
    writers(make_fifo(fifo_dir, 42), line(seq=5, cpu=0.4, rx=120))
    writers(make_fifo(fifo_dir, 7), line(seq=9, state="busy", cpu=55))
    before = int(time.time())
    records, problems = host_records(fifo_dir, {7, 42})
    assert problems == []
    assert records[42].idle and records[42].seq == 5 and records[42].cpu == 0.4
    assert not records[7].idle and records[7].cpu == 55
    assert records[42].received >= before
    # The vm-format probe runs after the host one drained the pipes: it publishes the same
    # records from the shared cache.
    by_vm = vm_records(fifo_dir)
    assert {vm: (r.seq, r.idle, r.received) for vm, r in by_vm.items()} == {
        vm: (r.seq, r.idle, r.received) for vm, r in records.items()
    }


def test_newest_valid_line_wins(fifo_dir, writers):
    data = line(seq=1) + line(seq=2) + line(seq=3, state="busy")
    writers(make_fifo(fifo_dir, 1), data)
    records, _ = host_records(fifo_dir)
    assert (records[1].seq, records[1].idle) == (3, False)


def test_no_fifos_and_no_directory_print_an_empty_idle(tmp_path, fifo_dir):
    assert run_probe(fifo_dir, "host").stdout == 'IDLE="1"\n'
    assert run_probe(tmp_path / "missing", "host").stdout == 'IDLE="1"\n'
    assert run_probe(tmp_path / "missing", "vm").stdout == ""
    assert not (tmp_path / "missing").exists()


def test_fifo_without_writer_or_data_is_read_without_blocking(fifo_dir, writers):
    make_fifo(fifo_dir, 3)  # no writer at all: a read is end of file
    writers(make_fifo(fifo_dir, 4))  # a writer that never writes and never closes
    started = time.monotonic()
    records, problems = host_records(fifo_dir)
    assert records == {} and problems == []
    assert time.monotonic() - started < 10


def test_silent_vm_keeps_its_record_with_its_first_receive_time(fifo_dir, writers):
    writers(make_fifo(fifo_dir, 5), line(seq=1))
    first, _ = host_records(fifo_dir)
    time.sleep(1.1)
    again, _ = host_records(fifo_dir)
    # Not refreshed: the service sees the record age and calls it stale in time.
    assert again[5].received == first[5].received


def test_partial_line_is_completed_by_the_next_run(fifo_dir, writers, tmp_path):
    fifo = make_fifo(fifo_dir, 6)
    whole = line(seq=4, cpu=1.5)
    holder = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(holder, whole[:30])
        records, problems = host_records(fifo_dir)
        assert records == {} and problems == []
        os.write(holder, whole[30:])
        records, _ = host_records(fifo_dir)
        assert records[6].seq == 4 and records[6].cpu == 1.5 and records[6].rejected == 0
    finally:
        os.close(holder)


def test_vm_whose_fifo_is_gone_is_forgotten(fifo_dir, writers):
    proc = writers(make_fifo(fifo_dir, 8), line(seq=1))
    records, _ = host_records(fifo_dir)
    assert 8 in records
    proc.kill()
    proc.wait()
    os.unlink(fifo_dir / "one8.out")
    records, _ = host_records(fifo_dir)
    assert records == {}
    assert '"8"' not in (fifo_dir / ".state" / "state.json").read_text()


def test_real_agent_writes_through_a_fifo_to_the_probe(fifo_dir, writers, tmp_path):
    fifo = make_fifo(fifo_dir, 11)
    writers(fifo)  # QEMU's end
    config = tmp_path / "agent.conf"
    config.write_text(f"[agent]\nLOG = {fifo}\n")
    agent = [sys.executable, "-m", "idlevm.agent", "--once", "--config", str(config)]
    subprocess.run(agent, cwd=REPO, check=True, timeout=60, capture_output=True)
    records, problems = host_records(fifo_dir, {11})
    assert problems == [] and records[11].seq == 0 and records[11].cpu is not None


def test_state_directory_is_private(fifo_dir, writers):
    writers(make_fifo(fifo_dir, 12), line())
    run_probe(fifo_dir, "host")
    state = fifo_dir / ".state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "state.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "damage",
    ["{not json", '{"vms": []}', '{"vms": {"13": {"fifo": [1, 2], "line": "IDLEVM1 forged"}}}'],
)
def test_damaged_state_file_is_reported_and_replaced(fifo_dir, writers, damage):
    writers(make_fifo(fifo_dir, 13), line(seq=2))
    (fifo_dir / ".state").mkdir(mode=0o700)
    (fifo_dir / ".state" / "state.json").write_text(damage)
    proc = run_probe(fifo_dir, "host")
    assert "state.json: damaged" in proc.stderr
    records, _ = parse_host_idle(parse_template(proc.stdout)[0][1])
    assert records[13].seq == 2


def test_probe_waits_for_the_lock_then_publishes_the_cache(fifo_dir, writers, monkeypatch):
    fifo = make_fifo(fifo_dir, 14)
    writers(fifo, line(seq=1))
    run_probe(fifo_dir, "host")
    holder = os.open(fifo, os.O_RDWR)
    os.write(holder, line(seq=2))
    fd = os.open(fifo_dir / ".state" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        monkeypatch.setattr("idlevm.host.cache.LOCK_WAIT", 0.2)
        states = probe.drain(str(fifo_dir), str(fifo_dir / ".state"), int(time.time()))
    finally:
        os.close(fd)
        os.close(holder)
    assert states[14].fields["seq"] == 1  # from the cache: the pipe (seq 2) was not read


def test_vm_whose_qemu_exited_is_no_longer_published(fifo_dir, writers):
    qemu = writers(make_fifo(fifo_dir, 15), line(seq=3))
    assert host_records(fifo_dir)[0][15].seq == 3
    qemu.kill()
    qemu.wait()
    # The FIFO is still there (cleanup did not run) but nobody holds it: the VM may run on
    # another host now, and this host must not publish its old record over the new one.
    assert host_records(fifo_dir)[0] == {}
    assert vm_records(fifo_dir) == {}


def test_vm_format_names_every_field_so_a_merge_cannot_keep_old_values(fifo_dir, writers):
    fifo = make_fifo(fifo_dir, 16)
    writers(fifo, line(seq=1, sess=3, gpu=90))
    monitoring = {}  # oned merges each round's values into the VM's MONITORING
    for _, vector in parse_template(run_probe(fifo_dir, "vm").stdout):
        monitoring.update(parse_template(base64.b64decode(vector["MONITOR"]).decode()))
    holder = os.open(fifo, os.O_RDWR)
    os.write(holder, line(seq=2))
    for _, vector in parse_template(run_probe(fifo_dir, "vm").stdout):
        monitoring.update(parse_template(base64.b64decode(vector["MONITOR"]).decode()))
    os.close(holder)
    record, problems = parse_monitoring_idle(monitoring, 16)
    assert problems == [] and record.seq == 2
    assert (record.sessions, record.gpu, record.rejected) == (None, None, 0)


def test_state_that_cannot_be_saved_still_publishes_what_was_read(fifo_dir, writers):
    writers(make_fifo(fifo_dir, 17), line(seq=4))
    (fifo_dir / ".state").mkdir(mode=0o700)
    (fifo_dir / ".state" / "state.json.tmp").mkdir()  # stands in for a full disk
    proc = run_probe(fifo_dir, "host")
    assert "cannot save" in proc.stderr
    assert parse_host_idle(parse_template(proc.stdout)[0][1])[0][17].seq == 4
