"""python -m idlevm.onesim as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "idlevm.onesim", "--listen", "127.0.0.1:0", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_serves_until_sigterm() -> None:
    proc = start("--auth", "oneadmin:pw", "--hosts", "3", "--vms", "25", "--seed", "4")
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("onesim listening on http://127.0.0.1:")
        url = line.split()[-1]
        reply = xmlrpc.client.ServerProxy(url).one.vmpool.info("oneadmin:pw", -2, -1, -1, -2)
        assert reply[0] is True and reply[1].count("<VM>") == 25
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "cloud.json"
    path.write_text(
        json.dumps({"hosts": [{"name": "h1"}], "vms": [{"name": "a"}, {"state": "HOLD"}]})
    )
    proc = start("--scenario", str(path))
    try:
        url = (proc.stdout.readline() if proc.stdout else "").split()[-1]
        reply = xmlrpc.client.ServerProxy(url).one.vmpool.info("oneadmin:secret", -2, -1, -1, -2)
        assert reply[1].count("<VM>") == 2 and "<NAME>a</NAME>" in reply[1]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_bad_scenario_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cloud.json"
    path.write_text(json.dumps({"hosts": [{}], "vms": [{"state": "RUNING"}]}))
    proc = start("--scenario", str(path))
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "vms[0].state: unknown state 'RUNING'" in err
