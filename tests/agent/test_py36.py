"""The agent, the protocol and the host scripts must run on Python 3.6 (old VM images and
hypervisors).

vermin checks the source (the one vermin test, for the agent and the host side alike); where a
real Python 3.6 is installed (the `python36` fixture), the agent runs on it; the host side's
tests run its scripts on it too (tests/host).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idlevm import protocol

REPO = Path(__file__).resolve().parents[2]
VERMIN = "import sys, vermin; sys.exit(vermin.main())"  # vermin has no __main__ module


@pytest.mark.skipif(importlib.util.find_spec("vermin") is None, reason="vermin not installed")
def test_agent_and_host_code_need_at_most_python_3_6():
    # The one vermin check: everything that runs on VMs and hypervisors (the zipapp's and the
    # installer's library: idlevm/__init__.py, protocol.py, agent/, host/).
    targets = [
        str(REPO / p)
        for p in ("idlevm/__init__.py", "idlevm/agent", "idlevm/host", "idlevm/protocol.py")
    ]
    command = [sys.executable, "-c", VERMIN, "--no-tips", "-t=3.6-", "--violations", *targets]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode()


def test_agent_runs_on_python_3_6(python36):
    command = [python36, "-m", "idlevm.agent", "--once", "--stdout", "--config", "/nonexistent"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONHOME", None)
    proc = subprocess.run(command, env=env, cwd=str(REPO), stdout=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0
    assert protocol.decode(proc.stdout)["seq"] == 0


def test_agent_imports_nothing_else_from_idlevm():
    # The zipapp holds only idlevm/__init__.py, idlevm/protocol.py and idlevm/agent/.
    for path in (REPO / "idlevm/agent").glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("import idlevm", "from idlevm")):
                assert line == "from idlevm import protocol", (path.name, line)
