"""The writer on a real pty, real FIFOs, a file and stdout: never blocks, counts drops."""

import os
import select
import termios
import time

import pytest

from idlevm import protocol
from idlevm.agent.writer import Writer


def line(seq):
    return protocol.encode({"seq": seq, "ts": 1764030000, "state": "busy", "since": 0})


def read_available(fd, timeout=2.0):
    data = b""
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        data += chunk
        timeout = 0.1
    return data


def test_pty_gets_whole_lines_in_raw_mode():
    master, slave = os.openpty()
    try:
        writer = Writer(os.ttyname(slave))
        assert writer.write(line(0)) and writer.write(line(1))
        lflag, oflag = termios.tcgetattr(writer.fd)[3], termios.tcgetattr(writer.fd)[1]
        assert not lflag & (termios.ICANON | termios.ECHO)
        assert not oflag & termios.OPOST  # "\n" is not turned into "\r\n"
        data = read_available(master)
        assert [protocol.decode(x)["seq"] for x in data.splitlines()] == [0, 1]
        assert writer.drops == 0
        writer.close()
    finally:
        os.close(master)
        os.close(slave)


def test_fifo_without_reader_drops_then_recovers(tmp_path):
    path = str(tmp_path / "one42.out")
    os.mkfifo(path)
    writer = Writer(path)
    assert not writer.write(line(0))  # ENXIO: nobody reads
    assert not writer.write(line(1))
    assert writer.drops == 2 and writer.fd is None
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert writer.write(line(2))
        assert writer.drops == 0
        assert protocol.decode(read_available(reader))["seq"] == 2
    finally:
        os.close(reader)
    assert not writer.write(line(3))  # the reader went away: EPIPE, counted, reopened later
    assert writer.drops == 1 and writer.fd is None
    writer.close()


def test_full_fifo_drops_without_blocking(tmp_path):
    path = str(tmp_path / "one43.out")
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    writer = Writer(path)
    try:
        start, written, seq = time.monotonic(), 0, 0
        while writer.drops < 5:
            assert time.monotonic() - start < 5, "the writer blocked or never filled the pipe"
            written += writer.write(line(seq))
            seq += 1
        assert written > 100  # a pipe buffer's worth went through first
        data = read_available(reader)  # the reader wakes up
        assert writer.write(line(seq))
        data += read_available(reader)
        lines = data.splitlines()
        good = [protocol.decode(x)["seq"] for x in lines if x]
        assert len(good) == written + 1  # whole lines only (PIPE_BUF writes are atomic)
        assert good[-1] == seq
    finally:
        writer.close()
        os.close(reader)


def test_partial_write_is_a_drop_and_the_next_line_starts_clean(tmp_path, monkeypatch):
    path = str(tmp_path / "log")
    writer = Writer(path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    assert not writer.write(line(0))
    assert writer.drops == 1
    monkeypatch.setattr(os, "write", real_write)
    assert writer.write(line(1))
    writer.close()
    with open(path, "rb") as handle:
        fragment, next_line = handle.read().split(b"\n")[:2]
    assert fragment == line(0)[:10]
    assert protocol.decode(next_line)["seq"] == 1


def test_file_is_appended(tmp_path):
    path = tmp_path / "agent.log"
    path.write_bytes(line(0))
    writer = Writer(str(path))
    assert writer.write(line(1))
    writer.close()
    assert [protocol.decode(x)["seq"] for x in path.read_bytes().splitlines()] == [0, 1]


def test_unwritable_destination_is_counted(tmp_path):
    writer = Writer(str(tmp_path / "no" / "such" / "dir"))
    assert not writer.write(line(0)) and not writer.write(line(1))
    assert writer.drops == 2


def test_stdout(capfd):
    writer = Writer("-")
    assert writer.write(line(7))
    writer.close()
    assert protocol.decode(capfd.readouterr().out)["seq"] == 7
    os.fstat(1)  # still open


@pytest.fixture(autouse=True)
def _bounded():
    start = time.monotonic()
    yield
    assert time.monotonic() - start < 10
