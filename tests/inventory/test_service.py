"""`manage.py suspend_service` against the simulator over real HTTP."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from idlevm.inventory.models import CollectionRun, ErrorMessage, Host, VirtualMachine
from idlevm.one.client import OneClient
from idlevm.one.idle import format_host_idle, format_monitoring_idle
from tests.inventory.factories import idle_record

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


def running_vms(sim) -> list:
    vms = OneClient(sim.url, sim.session).vms()
    return [v for v in vms if (v.state_name, v.lcm_state_name) == ("ACTIVE", "RUNNING")]


def test_once_stores_the_simulated_cloud(one_settings, onesim):
    expected = OneClient(onesim.url, onesim.session).vms()
    call_command("suspend_service", "--once")
    run = CollectionRun.objects.get()
    assert run.outcome == "ok"
    assert Host.objects.count() == 2
    assert set(VirtualMachine.objects.values_list("id", flat=True)) == {v.id for v in expected}


def test_idle_data_arrives_by_both_published_paths(one_settings, onesim):
    by_monitoring, by_host = running_vms(onesim)[:2]
    onesim.cloud.set_vm_monitoring(by_monitoring.id, format_monitoring_idle(idle_record(seq=7)))
    rec = idle_record(seq=9, idle=False, idle_since=None)
    onesim.cloud.set_host_template(by_host.host_id, {"IDLE": format_host_idle({by_host.id: rec})})
    call_command("suspend_service", "--once")
    first = VirtualMachine.objects.get(id=by_monitoring.id)
    second = VirtualMachine.objects.get(id=by_host.id)
    assert (first.idle, first.idle_seq, first.idle_source) == (True, 7, "vm")
    assert (second.idle, second.idle_seq, second.idle_source) == (False, 9, "host")


@pytest.mark.parametrize(
    "key, value",
    [
        ("IDLE_CPU", "1e309"),
        ("IDLE_TIME", "1099511627776"),  # 2**40: would overflow datetime arithmetic
        ("IDLE_RECEIVED", "0"),
        ("IDLE_SINCE", "1"),  # a stretch starting in 1970
        ("IDLE_STATE", "idle\nIDLE_STATE=busy"),
    ],
)
def test_hostile_monitoring_values_are_rejected_and_the_cycle_goes_on(
    one_settings, onesim, key, value
):
    target, other = running_vms(onesim)[:2]
    values = format_monitoring_idle(idle_record())
    values[key] = value
    onesim.cloud.set_vm_monitoring(target.id, values)
    onesim.cloud.set_vm_monitoring(other.id, format_monitoring_idle(idle_record(seq=3)))
    call_command("suspend_service", "--once")
    assert CollectionRun.objects.get().outcome == "ok"
    assert VirtualMachine.objects.get(id=target.id).idle is None
    assert VirtualMachine.objects.get(id=other.id).idle_seq == 3  # the others are unharmed
    error = ErrorMessage.objects.get(kind="idle_malformed", subject=f"vm:{target.id}")
    assert key in error.message


def test_wrong_password_fails_the_run_without_leaking_the_secret(one_settings, onesim, tmp_path):
    auth = tmp_path / "bad_auth"
    auth.write_text("oneadmin:Sup3rS3cretWr0ng\n")
    one_settings.ONE_AUTH = str(auth)
    with pytest.raises(CommandError) as exc:
        call_command("suspend_service", "--once")
    assert exc.value.returncode == 1
    error = ErrorMessage.objects.get(kind="one_auth")
    run = CollectionRun.objects.get()
    assert run.outcome == "failed"
    for text in (error.message, run.message, str(exc.value)):
        assert "Sup3rS3cretWr0ng" not in text


def test_unreachable_opennebula_is_a_failed_run(one_settings):
    one_settings.ONE_XMLRPC = "http://127.0.0.1:9/RPC2"  # discard port: nothing listens
    with pytest.raises(CommandError):
        call_command("suspend_service", "--once")
    assert ErrorMessage.objects.filter(kind="one_unreachable").exists()
    assert not VirtualMachine.objects.exists()


def test_slow_opennebula_times_out_and_keeps_the_last_good_inventory(one_settings, onesim):
    call_command("suspend_service", "--once")
    before = VirtualMachine.objects.count()
    one_settings.ONE_TIMEOUT = 0.5
    onesim.cloud.set_fault(delay=2.0)
    with pytest.raises(CommandError):
        call_command("suspend_service", "--once")
    assert ErrorMessage.objects.filter(kind="one_slow").exists()
    assert VirtualMachine.objects.count() == before
    assert VirtualMachine.objects.filter(gone_at__isnull=False).count() == 0


def test_a_slow_but_successful_fetch_is_stored_and_flagged(one_settings, onesim):
    one_settings.ONE_SLOW_SECONDS = 0.2
    onesim.cloud.set_fault(delay=0.3, calls=1)  # only the first call (the host pool) is slow
    call_command("suspend_service", "--once")
    assert CollectionRun.objects.get().outcome == "ok"
    assert VirtualMachine.objects.exists()
    assert "ONE_SLOW_SECONDS" in ErrorMessage.objects.get(kind="one_slow").message


def test_a_mistyped_one_auth_fails_instead_of_falling_back(
    one_settings, onesim, tmp_path, monkeypatch
):
    home_auth = tmp_path / ".one" / "one_auth"
    home_auth.parent.mkdir()
    home_auth.write_text(onesim.session)  # would work, and must not be used
    monkeypatch.setenv("HOME", str(tmp_path))
    one_settings.ONE_AUTH = str(tmp_path / "nope")
    with pytest.raises(CommandError):
        call_command("suspend_service", "--once")
    assert str(tmp_path / "nope") in ErrorMessage.objects.get(kind="one_auth").message


def test_a_secret_put_in_one_auth_is_never_echoed(one_settings):
    one_settings.ONE_AUTH = "oneadmin:Sup3rS3cret"
    with pytest.raises(CommandError) as exc:
        call_command("suspend_service", "--once")
    error = ErrorMessage.objects.get(kind="one_auth")
    assert "path of a file" in error.message
    for text in (error.message, CollectionRun.objects.get().message, str(exc.value)):
        assert "Sup3rS3cret" not in text


def test_without_one_auth_the_opennebula_lookup_order_applies(one_settings, onesim, tmp_path,
                                                              monkeypatch):  # fmt: skip
    home_auth = tmp_path / ".one" / "one_auth"
    home_auth.parent.mkdir()
    home_auth.write_text(onesim.session + "\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ONE_AUTH", raising=False)
    one_settings.ONE_AUTH = ""
    call_command("suspend_service", "--once")
    assert CollectionRun.objects.get().outcome == "ok"


def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next_cycle(one_settings):
    dead = CollectionRun.objects.create(started=timezone.now() - timedelta(hours=1))
    call_command("suspend_service", "--once")
    dead.refresh_from_db()
    assert dead.outcome == "failed" and "interrupted" in dead.message
    assert CollectionRun.objects.filter(outcome="ok").count() == 1


def kill_session(connection) -> None:
    """Have the database server end this Django connection's session, as a restart would."""
    import psycopg

    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
        port=settings["PORT"] or None, password=settings["PASSWORD"], autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_the_loop_reconnects_after_the_database_ends_its_session(one_settings):
    from django.db import connection

    from idlevm.inventory.service import run_cycle, run_loop

    if connection.vendor != "postgresql":
        pytest.skip("needs a database server that can end a session (the PostgreSQL pass)")
    attempts, outcomes = [], []

    def cycle(stop):
        attempts.append(1)
        try:
            run = run_cycle()
            outcomes.append(run.outcome)
            if len(outcomes) == 1:
                kill_session(connection)
            return run
        finally:
            if len(outcomes) == 2 or len(attempts) == 5:  # bounded either way
                os.kill(os.getpid(), signal.SIGTERM)

    run_loop(0.01, cycle=cycle)
    assert outcomes == ["ok", "ok"] and len(attempts) == 2


def test_interval_without_loop_is_refused():
    with pytest.raises(CommandError, match="--loop"):
        call_command("suspend_service", "--interval", "5")


@pytest.mark.django_db(transaction=True)
def test_loop_runs_cycles_until_sigterm_then_exits_cleanly(onesim, tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text(onesim.session)
    db = tmp_path / "loop.sqlite3"
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{db}",
        "ONE_XMLRPC": onesim.url,
        "ONE_AUTH": str(auth),
        "IDLEVM_VAR_DIR": str(tmp_path),
    }
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*manage, "suspend_service", "--settings=suspend_service.settings", "--loop",
         "--interval", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline and count < 2:
            time.sleep(0.3)
            with sqlite3.connect(db) as conn:  # the real file the service writes
                count = conn.execute(
                    "SELECT count(*) FROM inventory_collectionrun WHERE outcome = 'ok'"
                ).fetchone()[0]
        assert count >= 2
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in out


@pytest.mark.django_db(transaction=True)
def test_a_cycle_started_while_another_runs_is_skipped(one_settings):
    import threading

    from idlevm.inventory.lock import cycle_lock

    held, release = threading.Event(), threading.Event()

    def other_cycle() -> None:  # its own thread, so its own database connection
        from django.db import connection

        with cycle_lock() as got:
            assert got
            held.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_cycle)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(CommandError, match="still running: skipped") as refused:
            call_command("suspend_service", "--once")
        assert refused.value.returncode == 75  # EX_TEMPFAIL
        assert not CollectionRun.objects.exists()
    finally:
        release.set()
        thread.join()
    call_command("suspend_service", "--once")  # the lock is free again
    assert CollectionRun.objects.get().outcome == "ok"
