"""The agent loop in process and as a real `python -m idlevm.agent` subprocess."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from idlevm import protocol
from idlevm.agent import daemon
from idlevm.agent.config import Config
from idlevm.agent.writer import Writer

REPO = Path(__file__).resolve().parents[2]


def agent_command(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return [sys.executable, "-m", "idlevm.agent", *args], env


class StubSampler:
    def __init__(self, *samples):
        self.samples = list(samples)

    def sample(self, now=None):
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]


def test_out_of_range_value_loses_the_field_not_the_record(tmp_path):
    path = tmp_path / "log"
    sampler = StubSampler({"cpu": 150.0, "load": 0.1, "rx": float("nan"), "sess": 1})
    agent = daemon.Agent(Config(), Writer(str(path)), sampler=sampler)
    assert agent.step()
    record = protocol.decode(path.read_bytes())
    assert record["seq"] == 0 and record["state"] == "busy"
    assert "cpu" not in record and "rx" not in record
    assert record["load"] == 0.1 and record["sess"] == 1


def test_records_carry_drops_and_verdict(tmp_path):
    fifo = str(tmp_path / "one7.out")
    os.mkfifo(fifo)
    quiet = {"cpu": 0.5, "load": 0.0, "disk": 0.0, "rx": 0.0, "tx": 0.0}
    agent = daemon.Agent(Config(), Writer(fifo), sampler=StubSampler(quiet))
    assert not agent.step() and not agent.step()  # no reader: dropped
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert agent.step()
        record = protocol.decode(os.read(reader, 4096))
    finally:
        os.close(reader)
    assert record["seq"] == 2 and record["drops"] == 2
    assert record["state"] == "idle" and 0 < record["since"] <= record["ts"]
    agent.writer.close()


def test_run_stops_when_asked(tmp_path):
    path = tmp_path / "log"
    config = Config(interval=1)
    agent = daemon.Agent(config, Writer(str(path)), sampler=StubSampler({"cpu": 1.0}))
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    start = time.monotonic()
    agent.run(stop)
    assert time.monotonic() - start < 3
    assert [protocol.decode(x)["seq"] for x in path.read_bytes().splitlines()] == [0]


def test_once_stdout_prints_one_line_from_this_machine():
    command, env = agent_command("--once", "--stdout", "--config", "/nonexistent/agent.conf")
    proc = subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.PIPE, timeout=15)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    record = protocol.decode(lines[0])
    assert record["seq"] == 0 and "cpu" in record and "load" in record


def test_daemon_writes_lines_and_exits_on_sigterm(tmp_path, machine):
    machine.write()
    machine.sessions(("pts/0", "alice", 30))
    log = tmp_path / "agent.log"
    conf = tmp_path / "agent.conf"
    conf.write_text(f"[agent]\nLOG = {log}\nINTERVAL = 1\n")
    command, env = agent_command("--config", str(conf), "--root", machine.root)
    proc = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_bytes().splitlines()) >= 3:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    records = [protocol.decode(x) for x in log.read_bytes().splitlines()]
    assert len(records) >= 3
    assert [r["seq"] for r in records] == list(range(len(records)))
    # The fake counters never move: no CPU rate, so the verdict stays busy (fail safe).
    assert all(r["state"] == "busy" and r["since"] == 0 for r in records)
    assert all(r["sess"] == 1 and r["load"] == 0.02 and r["drops"] == 0 for r in records)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_first_wait_exits_zero(signum):
    command, env = agent_command("--stdout", "--config", "/nonexistent/agent.conf")
    proc = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert b"using defaults" in proc.stderr.readline()  # printed once the handlers are set
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0
    for x in out.splitlines():
        protocol.decode(x)


def test_a_failing_sampler_gives_a_busy_record(tmp_path):
    class Broken:
        def sample(self, now=None):
            raise RuntimeError("boom")

    path = tmp_path / "log"
    agent = daemon.Agent(Config(), Writer(str(path)), sampler=Broken())
    assert agent.step()
    record = protocol.decode(path.read_bytes())
    assert record["state"] == "busy" and "cpu" not in record
