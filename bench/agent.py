"""Agent benchmark: resident memory and CPU time per sample of the running agent.

Runs the real agent (`python3 -m idlevm.agent --stdout`) on this machine's /proc with a
1-second interval for DURATION seconds, counts the records it printed, and reads its RSS
and CPU time from /proc/<pid>. Side by side, the bare cost: an idle Python interpreter's RSS.
Targets (issue 4): <= 15 MB RSS, <= 5 ms CPU per sample.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DURATION = float(os.environ.get("AGENT_BENCH_SECONDS", "20"))
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def bare_python_rss() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1)
        return rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def agent() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "agent.conf"
        conf.write_text("[agent]\nLOG = -\nINTERVAL = 1\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "idlevm.agent", "--config", str(conf), "--stdout"],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(2)  # start-up (imports) is not per-sample cost
            start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
            assert proc.stdout is not None
            lines = 0
            while time.monotonic() - start < DURATION:
                if proc.stdout.readline():
                    lines += 1
            cpu = cpu_seconds(proc.pid) - start_cpu
            rss = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return {"samples": lines, "cpu_ms": 1000 * cpu / max(lines, 1), "rss": rss}


def main() -> None:
    bare = bare_python_rss()
    got = agent()
    print("| figure | value | bare Python | target | met? |")
    print("|---|---|---|---|---|")
    print(f"| agent RSS | {got['rss']:.1f} MiB | {bare:.1f} MiB | <= 15 MB "
          f"| {'yes' if got['rss'] * 1.048576 <= 15 else 'no'} |")  # fmt: skip
    print(f"| CPU per sample ({got['samples']} samples) | {got['cpu_ms']:.2f} ms | - | <= 5 ms "
          f"| {'yes' if got['cpu_ms'] <= 5 else 'no'} |")  # fmt: skip


if __name__ == "__main__":
    main()
