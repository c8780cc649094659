"""Probe benchmark: time to drain 256 VMs' FIFOs and print their idle data.

Set-up: 256 real FIFOs, each held open read-write by this process as QEMU holds them, and
before every run each receives one fresh agent line (what an agent writes per interval).
Side by side, in one run:
- **bare**: open, read and close the 256 FIFOs, nothing else: what any reader must pay;
- **drain**: `idlevm.host.probe.drain()` + `format_host()`: the same reads plus validation,
  the state cache (one small file per VM) and the output;
- **drain, one flooder**: the same with VM 0's pipe refilled to its 64 KiB capacity with
  garbage lines before every run;
- **CLI**: the whole `python3 -m idlevm.host.probe --format host` process, as OpenNebula runs
  it (interpreter start-up included).
Target (issue 5): <= 100 ms for 256 VMs, unaffected by the flooder beyond its bound.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from idlevm import protocol
from idlevm.host import probe

REPO = Path(__file__).resolve().parents[1]
VMS = int(os.environ.get("PROBE_BENCH_VMS", "256"))
RUNS = int(os.environ.get("PROBE_BENCH_RUNS", "21"))


def agent_line(seq: int) -> bytes:
    now = int(time.time())
    record = {"seq": seq, "ts": now, "state": "idle", "since": now - 3600, "cpu": 0.4}
    record.update(steal=0.0, load=0.02, disk=0.0, rx=300.0, tx=120.0, sess=0, input=7200)
    return protocol.encode(record)


def fill(fd: int, data: bytes) -> None:
    """Write until the pipe is full or data is out (non-blocking)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            return


def bare_read(directory: str) -> None:
    for vm_id in range(VMS):
        fd = os.open(f"{directory}/one{vm_id}.out", os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    if not os.read(fd, 65536):
                        break
                except BlockingIOError:
                    break
        finally:
            os.close(fd)


def measure(prepare: Callable[[], None], run: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(RUNS):
        prepare()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float], bare: float) -> str:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    return f"| {name} | {median * 1000:.1f} ms | {p95 * 1000:.1f} ms | {median / bare:.1f}x |"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = f"{tmp}/vm_serial"
        os.mkdir(directory, 0o750)
        holders = []
        for vm_id in range(VMS):
            path = f"{directory}/one{vm_id}.out"
            os.mkfifo(path, 0o660)
            holders.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))
        seq = iter(range(10**9))

        def one_line_each() -> None:
            line = agent_line(next(seq))
            for fd in holders:
                os.write(fd, line)

        def with_flooder() -> None:
            one_line_each()
            fill(holders[0], b"garbage from a hostile VM\n" * 4096)

        state = f"{directory}/.state"
        drain_run = lambda: probe.format_host(probe.drain(directory, state, int(time.time())))  # noqa: E731
        # As on a hypervisor: a plain interpreter (-S: no site-packages, so not this venv's
        # import hooks) with the installed library on PYTHONPATH.
        env = dict(os.environ, PYTHONPATH=str(REPO))
        python = [sys.executable, "-S"]
        cli = [*python, "-m", "idlevm.host.probe", "--dir", directory, "--format", "host"]
        cli_run = lambda: subprocess.run(cli, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: E731
        python_run = lambda: subprocess.run([*python, "-c", "pass"], env=env, check=True)  # noqa: E731

        bare = measure(one_line_each, lambda: bare_read(directory))
        drain = measure(one_line_each, drain_run)
        flood = measure(with_flooder, drain_run)
        whole = measure(one_line_each, cli_run)
        interpreter = measure(lambda: None, python_run)
        for fd in holders:
            os.close(fd)

    base = statistics.median(bare)
    print(f"{VMS} FIFOs, {RUNS} runs each; ratios against the bare read")
    print("| measurement | median | p95 | / bare |")
    print("|---|---|---|---|")
    print(row("bare: open + read + close", bare, base))
    print(row("drain + format (probe, in process)", drain, base))
    print(row("drain + format, one VM flooding", flood, base))
    print(row("whole probe process (CLI)", whole, base))
    print(row("python3 -S -c pass (start-up alone)", interpreter, base))
    flood_cost = statistics.median(flood) / statistics.median(drain)
    print(f"flooder / no flooder: {flood_cost:.2f}x")


if __name__ == "__main__":
    main()
