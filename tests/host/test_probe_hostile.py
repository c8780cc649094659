"""A VM's owner controls what comes out of its serial port: nothing they write may speak for
another VM, break out of a template value, or cost the probe more than a bounded amount."""

import base64
import json
import os
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idlevm import protocol
from idlevm.host import drain, probe
from idlevm.host.cache import VmState
from idlevm.one.idle import MAX_ATTRIBUTE_BYTES, parse_host_idle, parse_monitoring_idle
from idlevm.one.template import parse_template

REPO = Path(__file__).resolve().parents[2]
NOW = int(time.time())


def signed(body: str) -> bytes:
    """A line with a correct CRC: the CRC proves nothing about who wrote it."""
    crc = zlib.crc32(body.encode("latin-1")) & 0xFFFFFFFF
    return f"{body} crc={crc:08x}\n".encode("latin-1")


def good(seq=1, state="idle"):
    since = f" since={NOW - 600}" if state == "idle" else ""
    return signed(f"IDLEVM1 seq={seq} ts={NOW} state={state}{since} cpu=0.5")


@pytest.fixture
def fifo_dir(tmp_path):
    path = tmp_path / "vm_serial"
    path.mkdir()
    os.chmod(path, 0o750)
    return path


def fifo_with(fifo_dir, vm_id, data):
    """A FIFO holding `data`, kept open read-write by this process (as QEMU would)."""
    path = fifo_dir / f"one{vm_id}.out"
    os.mkfifo(path, 0o660)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    written = 0
    while written < len(data):
        try:
            written += os.write(fd, data[written:])
        except BlockingIOError:
            break  # the pipe is full: what a flooding VM achieves
    return fd


def run(fifo_dir, fmt):
    command = [sys.executable, "-m", "idlevm.host.probe", "--dir", str(fifo_dir), "--format", fmt]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    return proc


def host_records(fifo_dir):
    proc = run(fifo_dir, "host")
    attrs = parse_template(proc.stdout)
    assert [name for name, _ in attrs] == ["IDLE"]
    records, problems = parse_host_idle(attrs[0][1])
    assert problems == []
    return records, proc.stderr


HOSTILE_LINES = [
    b"\x00\xff\xfe binary \x1b[31m garbage\r\n",
    "IDLEVM1 seq=1 ts=1 state=idle crc=ünïcode\n".encode(),
    signed('IDLEVM1 seq=1 ts=1764030000 state=idle" MALICIOUS="1'),
    signed("IDLEVM1 seq=1 ts=1764030000 state=idle\\"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle since=0 cpu=1e9"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle cpu=-1"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle cpu=nan"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=IDLE"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle since={NOW + 99}"),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle since=5"),  # decodes, the client would refuse
    signed(f"IDLEVM1 seq=1 seq=2 ts={NOW} state=idle"),
    signed(f"IDLEVM1 seq=99999999999999999 ts={NOW} state=idle"),
    signed(f'IDLEVM1 seq=1 ts={NOW} state=idle cpu=0.5]\nVM = [ ID="43" ]'),
    signed(f"IDLEVM1 seq=1 ts={NOW} state=idle cpu=0.5,rcv=1;43:seq=9"),
    b'IDLE="1;43:seq=9,ts=1764030000,rcv=1764030000,state=idle"\n',
    b'VM = [ ID="43", MONITOR="SURMRV9TVEFURT0iaWRsZSIK" ]\n',
    signed("IDLEVM2 seq=1 ts=1764030000 state=idle"),
    b"IDLEVM1 seq=1 ts=1764030000 state=idle crc=00000000\n",
]


@pytest.mark.parametrize("bad", HOSTILE_LINES, ids=range(len(HOSTILE_LINES)))
def test_hostile_line_is_rejected_counted_and_never_published(fifo_dir, bad):
    fd = fifo_with(fifo_dir, 42, bad)
    try:
        proc = run(fifo_dir, "host")
    finally:
        os.close(fd)
    assert proc.stdout == 'IDLE="1"\n'
    state = json.loads((fifo_dir / ".state" / "state.json").read_text())
    assert state["vms"]["42"]["rejected"] >= 1


def test_every_hostile_line_then_a_good_one_publishes_only_the_good_one(fifo_dir):
    fd = fifo_with(fifo_dir, 42, b"".join(HOSTILE_LINES) + good(seq=7))
    other = fifo_with(fifo_dir, 43, good(seq=3, state="busy"))
    try:
        records, _ = host_records(fifo_dir)
    finally:
        os.close(fd)
        os.close(other)
    assert records[42].seq == 7 and records[42].idle
    # Each line of the list, as cut at newlines, is counted once.
    assert records[42].rejected == sum(bad.count(b"\n") for bad in HOSTILE_LINES)
    # The VM that claimed to speak for 43 changed nothing for 43.
    assert (records[43].seq, records[43].idle, records[43].rejected) == (3, False, 0)


def test_a_valid_line_naming_another_vm_counts_for_its_own_fifo(fifo_dir):
    fd = fifo_with(fifo_dir, 42, signed(f"IDLEVM1 seq=5 ts={NOW} state=idle vm=43 id=43"))
    try:
        records, _ = host_records(fifo_dir)
    finally:
        os.close(fd)
    assert set(records) == {42}


def test_over_long_line_is_dropped_and_the_next_line_still_counts(fifo_dir):
    fd = fifo_with(fifo_dir, 42, b"A" * 3000)
    try:
        assert host_records(fifo_dir)[0] == {}
        os.write(fd, b"B" * 3000 + b"\n" + good(seq=2))  # the end of the long line, then good
        records, _ = host_records(fifo_dir)
    finally:
        os.close(fd)
    assert records[42].seq == 2 and records[42].rejected == 1


def test_flooding_vm_costs_a_bounded_read_and_does_not_hide_the_others(fifo_dir):
    honest = [fifo_with(fifo_dir, vm, good(seq=vm)) for vm in range(1, 21)]
    flood = fifo_with(fifo_dir, 99, b"x\n" * 200_000)  # fills its pipe
    started = time.monotonic()
    try:
        records, _ = host_records(fifo_dir)
    finally:
        for fd in [*honest, flood]:
            os.close(fd)
    assert time.monotonic() - started < 10
    assert {vm: records[vm].seq for vm in range(1, 21)} == {vm: vm for vm in range(1, 21)}
    assert 99 not in records


def test_writer_that_never_stops_is_read_at_most_the_limit():
    import threading

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                os.write(write_fd, b"y" * 4096)
            except BlockingIOError:
                time.sleep(0.0001)

    thread = threading.Thread(target=flood)
    thread.start()
    try:
        data = drain._read_available(read_fd, drain.READ_LIMIT)
    finally:
        stop.set()
        thread.join()
        os.close(read_fd)
        os.close(write_fd)
    assert len(data) <= drain.READ_LIMIT


def test_planted_files_and_odd_names_are_never_read(fifo_dir, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(good(seq=1))
    (fifo_dir / "one20.out").symlink_to(target)
    (fifo_dir / "one21.out").write_bytes(good(seq=1))
    if os.geteuid() == 0:
        os.mknod(fifo_dir / "one22.out", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    fds = [fifo_with(fifo_dir, name, good(seq=1)) for name in ("042", "-1", "1.bak", "1" * 10)]
    try:
        records, stderr = host_records(fifo_dir)
    finally:
        for fd in fds:
            os.close(fd)
    assert records == {}
    assert "one21.out: not a FIFO" in stderr and "one20.out: not a FIFO" in stderr


@pytest.mark.parametrize("mode", [0o770, 0o757])
def test_directory_writable_by_others_is_not_trusted(fifo_dir, mode):
    fd = fifo_with(fifo_dir, 42, good())
    os.chmod(fifo_dir, mode)
    try:
        proc = run(fifo_dir, "host")
    finally:
        os.close(fd)
    assert proc.stdout == 'IDLE="1"\n'
    assert "writable by group or others" in proc.stderr


def test_symlinked_directory_is_not_followed(fifo_dir, tmp_path):
    fd = fifo_with(fifo_dir, 42, good())
    link = tmp_path / "link"
    link.symlink_to(fifo_dir)
    try:
        proc = run(link, "host")
    finally:
        os.close(fd)
    assert proc.stdout == 'IDLE="1"\n'


def longest_state(vm_id):
    state = VmState()
    state.record = protocol.encode({
        "seq": 2**53, "ts": 4102444800, "state": "idle", "since": 4102444800,
        "cpu": 99.999999, "steal": 99.999999, "load": 999999.999999, "disk": 999999999999,
        "rx": 999999999999, "tx": 999999999999, "sess": 999999, "input": 2**40,
        "procs": 999999, "gpu": 99.999999, "drops": 2**53,
    })  # fmt: skip
    state.fields = protocol.decode(state.record)
    state.received = 4102444800
    state.rejected = 2**53 - 1
    return state


def test_whole_output_stays_within_the_clients_bounds():
    states = {vm: longest_state(vm) for vm in range(999_998_000, 999_999_999)}
    text = probe.format_host(states)
    value = parse_template(text)[0][1]
    assert len(value) <= MAX_ATTRIBUTE_BYTES
    records, problems = parse_host_idle(value)
    assert problems == [] and 0 < len(records) <= 1000
    assert len(probe.format_vm(states).splitlines()) == 1000


agent_lines = st.builds(
    lambda seq, idle, cpu, ago: protocol.encode(
        {"seq": seq, "ts": NOW, "state": "idle" if idle else "busy", "cpu": cpu}
        | ({"since": NOW - ago} if idle else {})
    ),
    st.integers(0, 2**53),
    st.booleans(),
    st.floats(0, 100),
    st.integers(0, 10**6),
)
# Valid lines, garbage, and valid lines with garbage spliced in at any place.
vm_output = st.one_of(
    agent_lines,
    st.binary(max_size=700),
    st.builds(
        lambda line, at, junk: line[:at] + junk + line[at:],
        agent_lines,
        st.integers(0, 200),
        st.sampled_from([b'"', b"\\", b"\n", b"]", b"[", b",", b";", b"=", b"\xc3\xa9", b"\x00"]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(vm_output, max_size=8))
def test_any_bytes_from_a_vm_publish_only_valid_records_of_that_vm(chunks):
    state = VmState()
    for chunk in chunks:
        probe.update(state, chunk, NOW)
    host = parse_template(probe.format_host({42: state}))
    assert [name for name, _ in host] == ["IDLE"]
    records, problems = parse_host_idle(host[0][1])
    assert problems == [] and set(records) <= {42}
    vms = parse_template(probe.format_vm({42: state}))
    assert len(vms) == len(records)
    for _, vector in vms:
        assert vector["ID"] == "42"
        monitor = dict(parse_template(base64.b64decode(vector["MONITOR"]).decode("ascii")))
        record, problems = parse_monitoring_idle(monitor, 42)
        assert problems == [] and record.seq == records[42].seq
    # The newest intact agent line is the one published.
    complete = b"".join(chunks).split(b"\n")[:-1]  # the last piece awaits its newline
    intact = [c for c in complete if drain.check(c) is not None]
    if intact:
        assert records[42].seq == protocol.decode(intact[-1])["seq"]


def padded(length):
    """A valid line of exactly `length` bytes before its newline (unknown keys pad it)."""
    body = f"IDLEVM1 seq=1 ts={NOW} state=busy x="
    body += "a" * (length - len(body) - len(" crc=00000000"))
    line = signed(body)
    assert len(line) == length + 1
    return line


@pytest.mark.parametrize("cut", [None, 100, 511])
@pytest.mark.parametrize(("length", "accepted"), [(511, True), (512, False)])
def test_line_length_limit_holds_however_the_line_arrives(length, accepted, cut):
    line = padded(length)
    chunks = [line] if cut is None else [line[:cut], line[cut:]]
    state = VmState()
    for chunk in chunks:
        probe.update(state, chunk, NOW)
    assert (state.record is not None) == accepted
    assert state.rejected == (0 if accepted else 1)
