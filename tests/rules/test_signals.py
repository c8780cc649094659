"""The real service process killed or stopped mid-action: never a duplicate, never half a cycle."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.rules.conftest import add_vm, idle_monitoring, state

REPO = Path(__file__).resolve().parents[2]
RULES = """
rules:
  - name: suspend-idle
    expression: idle and idle_for > hours(4)
    action: suspend
    dry_run: false
    applies_to: all
"""


@pytest.fixture
def service(sim: Any, tmp_path: Path) -> Any:
    """Runs manage.py commands as separate processes on a SQLite file of their own."""
    auth = tmp_path / "one_auth"
    auth.write_text(sim.session)
    db = tmp_path / "service.sqlite3"
    env = {
        **os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{db}", "ONE_XMLRPC": sim.url,
        "ONE_AUTH": str(auth), "IDLEVM_VAR_DIR": str(tmp_path), "MAX_ACTIONS_PERCENT": "100",
    }  # fmt: skip
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)

    def manage(*args: str, **kw: Any) -> Any:
        command = [sys.executable, str(REPO / "manage.py"), *args]
        if kw.pop("background", False):
            return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)  # fmt: skip
        return subprocess.run(command, env=env, text=True, capture_output=True, **kw)

    def query(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(db) as conn:  # the real file the service writes
            return conn.execute(sql).fetchall()

    manage("migrate", "--noinput", check=True)
    manage("rules", "import", str(rules), check=True)
    manage.query = query  # type: ignore[attr-defined]
    return manage


def wait_for(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_while_an_action_is_in_flight_never_repeats_it(sim, service):
    vm = add_vm(sim, "idle", idle_monitoring())
    sim.cloud.set_fault(delay=2.0, method="one.vm.action", calls=1)  # a slow driver
    proc = service("suspend_service", "--once", background=True)
    pending = "SELECT count(*) FROM rules_actionrecord WHERE outcome = 'pending'"
    wait_for(lambda: service.query(pending)[0][0] == 1)
    time.sleep(0.3)  # the request has reached OpenNebula
    proc.kill()
    proc.communicate(timeout=10)
    wait_for(lambda: state(sim, vm) == "SUSPENDED/LCM_INIT")  # oned finished it anyway
    again = service("suspend_service", "--once", timeout=60)
    assert again.returncode == 0, again.stderr
    records = service.query("SELECT vm_id, outcome FROM rules_actionrecord")
    assert records == [(vm, "interrupted")]  # one action, its outcome honestly unknown
    runs = service.query("SELECT outcome FROM inventory_collectionrun ORDER BY id")
    assert runs == [("failed",), ("ok",)]  # the killed cycle is closed, not left running


@pytest.mark.slow
def test_sigterm_in_the_loop_finishes_the_action_in_flight_and_abandons_the_rest(sim, service):
    vms = [add_vm(sim, f"idle-{i}", idle_monitoring()) for i in range(3)]
    sim.cloud.set_fault(delay=1.5, method="one.vm.action")
    proc = service("suspend_service", "--loop", "--interval", "60", background=True)
    pending = "SELECT count(*) FROM rules_actionrecord WHERE outcome = 'pending'"
    wait_for(lambda: service.query(pending)[0][0] == 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after 1 cycle" in out
    outcomes = service.query("SELECT outcome FROM rules_actionrecord")
    assert outcomes == [("done",)]
    assert sorted(state(sim, v) for v in vms).count("SUSPENDED/LCM_INIT") == 1
    assert "not started" in err


@pytest.mark.slow
def test_sigterm_during_a_single_cycle_finishes_the_action_in_flight(sim, service):
    """systemctl stop or a shutdown during a cron/timer cycle: the same clean stop."""
    vms = [add_vm(sim, f"idle-{i}", idle_monitoring()) for i in range(3)]
    sim.cloud.set_fault(delay=1.5, method="one.vm.action")
    proc = service("suspend_service", "--once", background=True)
    pending = "SELECT count(*) FROM rules_actionrecord WHERE outcome = 'pending'"
    wait_for(lambda: service.query(pending)[0][0] == 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "actions: 1 done" in out
    assert service.query("SELECT outcome FROM rules_actionrecord") == [("done",)]
    assert service.query("SELECT outcome FROM inventory_collectionrun") == [("ok",)]
    assert [state(sim, v) for v in vms].count("SUSPENDED/LCM_INIT") == 1
