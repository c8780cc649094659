"""Collectors on fake /proc trees: exact values from known deltas, and malformed input."""

import os
import stat

import pytest

from idlevm.agent import signals
from idlevm.agent.config import Config
from idlevm.agent.signals import Sampler
from idlevm.agent.verdict import busy_reasons


def advance(cpu, **deltas):
    return {key: value + deltas.get(key, 0) for key, value in cpu.items()}


def two_samples(machine, clock, config, first, second, seconds=10):
    """The second sample's values after writing `first`, waiting, and writing `second`."""
    sampler = Sampler(config, root=machine.root, gpu_command="no-such-nvidia-smi", clock=clock)
    machine.write(**first)
    assert sampler.sample(now=machine.now - seconds).get("cpu") is None  # no deltas yet
    clock.now += seconds
    machine.write(**second)
    return sampler.sample(now=machine.now)


def test_idle_machine(machine, clock, base_cpu):
    config = Config(ignore_users=frozenset({"root"}))
    machine.sessions(("pts/0", "alice", 7200), ("pts/1", "root", 5))
    second = {
        # 1000 jiffies: 10 user + 5 system busy, 980 idle, 5 iowait (idle too).
        "cpu": advance(base_cpu, user=10, system=5, idle=980, iowait=5),
        "load": "0.04",
        "sda": (4208144 + 10, 9612048 + 30),  # 40 sectors in 10 s: 2048 B/s
        "loop": 999999,  # loop, dm-0 and partitions are not counted
        "rx": 5000,
        "tx": 3000,
        "lo": 10**9,  # loopback and docker0 are not counted
    }
    values = two_samples(machine, clock, config, {}, second)
    assert values["cpu"] == pytest.approx(1.5)
    assert values["steal"] == 0
    assert values["load"] == 0.04
    assert values["disk"] == pytest.approx(2048.0)
    assert values["rx"] == pytest.approx(500.0)
    assert values["tx"] == pytest.approx(300.0)
    assert values["sess"] == 1  # alice; root is ignored, the getty and dead entry too
    assert values["input"] == 7200
    assert values["procs"] is None  # no BUSY_PROCESSES configured
    assert values["gpu"] is None
    assert busy_reasons(values, config) == []


def test_busy_machine(machine, clock, base_cpu):
    config = Config(busy_processes=frozenset({"matlab"}))
    machine.sessions(("pts/0", "alice", 60))
    machine.process(1234, "matlab")
    machine.process(99, "bash")
    second = {
        "cpu": advance(base_cpu, user=500, system=100, idle=300, iowait=50, steal=50),
        "load": "2.50",
        "sda": (4208144 + 20000, 9612048 + 0),  # 10240000 bytes in 10 s
        "rx": 10**6,
        "tx": 2 * 10**5,
    }
    values = two_samples(machine, clock, config, {}, second)
    assert values["cpu"] == pytest.approx(60.0)
    assert values["steal"] == pytest.approx(5.0)
    assert values["load"] == 2.5
    assert values["disk"] == pytest.approx(1024000.0)
    assert values["rx"] == pytest.approx(100000.0)
    assert values["tx"] == pytest.approx(20000.0)
    assert values["sess"] == 1
    assert values["input"] == 60
    assert values["procs"] == 1
    assert busy_reasons(values, config) == ["cpu", "load", "disk", "rx", "tx", "input", "procs"]


def test_ignored_processes_cpu_is_subtracted(machine, clock, base_cpu):
    config = Config(ignore_processes=frozenset({"backup-agent"}))
    sampler = Sampler(config, root=machine.root, gpu_command="no-such-nvidia-smi", clock=clock)
    machine.write()
    machine.process(500, "backup-agent", ticks=(100, 20))
    sampler.sample(now=machine.now)
    clock.now += 10
    machine.write(cpu=advance(base_cpu, user=200, system=40, idle=760))
    machine.process(500, "backup-agent", ticks=(300, 30))  # 210 of the 240 busy ticks
    values = sampler.sample(now=machine.now)
    assert values["cpu"] == pytest.approx(3.0)  # (240 - 210) / 1000
    assert values["procs"] is None


def test_counters_going_backwards_give_no_rate(machine, clock, base_cpu):
    first = {"sda": (5000, 5000), "rx": 10**6}
    second = {"cpu": advance(base_cpu, user=-5), "sda": (10, 10), "rx": 0}
    values = two_samples(machine, clock, Config(), first, second)
    assert values["cpu"] is None and values["steal"] is None
    assert values["disk"] is None
    assert values["rx"] is None


@pytest.mark.parametrize(
    ("relative", "content", "gone"),
    [
        ("proc/stat", "cpu  1 2 3\n", ["cpu", "steal"]),
        ("proc/stat", "garbage\n", ["cpu", "steal"]),
        ("proc/loadavg", "", ["load"]),
        ("proc/loadavg", "nan 0 0\n", ["load"]),
        ("proc/diskstats", "   8       0 sda 1 2 three 4 5 6 7 8\n", ["disk"]),
        ("proc/net/dev", "h1\nh2\n  eth0: 1 2 3\n", ["rx", "tx"]),
        ("proc/net/dev", "h1\nh2\n  eth0: x 2 3 4 5 6 7 8 9 10\n", ["rx", "tx"]),
        ("proc/stat", None, ["cpu", "steal"]),
        ("proc/diskstats", None, ["disk"]),
        ("proc/net/dev", None, ["rx", "tx"]),
        ("var/run/utmp", None, ["sess", "input"]),
    ],
)
def test_malformed_input_loses_only_that_signal(machine, clock, base_cpu, relative, content, gone):
    machine.sessions(("pts/0", "alice", 100))
    sampler = Sampler(Config(), root=machine.root, gpu_command="no-such-nvidia-smi", clock=clock)
    machine.write()
    sampler.sample(now=machine.now)
    clock.now += 10
    machine.write(cpu=advance(base_cpu, user=10, idle=990), sda=(4208154, 9612048), rx=100)
    if content is None:
        os.remove(machine.path(relative))
    else:
        machine.put(relative, content)
    values = sampler.sample(now=machine.now)
    expected = {"cpu": 1.0, "steal": 0.0, "load": 0.02, "disk": 512.0, "rx": 10.0, "tx": 0.0}
    expected.update(sess=1, input=100)
    for key, value in expected.items():
        if key in gone:
            assert values.get(key) is None, key
        else:
            assert values[key] == pytest.approx(value), key


def test_truncated_utmp_and_missing_tty(machine):
    machine.sessions(("pts/0", "alice", 100), ("pts/3", "bob", 10))
    os.remove(machine.path("dev/pts/3"))  # bob logged out since utmp was written
    with open(machine.path("var/run/utmp"), "ab") as handle:
        handle.write(b"\x07\x00" * 50)  # half a record: ignored
    lines = signals.utmp_sessions(machine.root)
    assert lines == ["pts/0", "pts/3"]
    assert signals.input_age(machine.root, [*lines, ":0", "../../etc/passwd"], machine.now) == 100


def test_missing_sys_block_loses_disk_only(machine, clock):
    machine.write()
    os.rename(machine.path("sys/block"), machine.path("sys/gone"))
    values = Sampler(Config(), root=machine.root, clock=clock).sample()
    assert values["load"] == 0.02
    assert "disk" not in values


def fake_command(tmp_path, body):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_gpu_is_the_busiest_gpu(tmp_path):
    assert signals.gpu_utilization(fake_command(tmp_path, "printf '12\\n47\\n0\\n'")) == 47.0


def test_gpu_absent_failing_or_hanging(tmp_path, machine, clock, monkeypatch):
    assert signals.gpu_utilization(str(tmp_path / "absent")) is None
    machine.write()
    for body in ("exit 3", "echo '[N/A]'", "exec sleep 5"):
        monkeypatch.setattr(signals, "GPU_TIMEOUT", 0.3)
        sampler = Sampler(Config(), root=machine.root, gpu_command=fake_command(tmp_path, body))
        values = sampler.sample()
        assert values["gpu"] is None, body
        assert values["load"] == 0.02
