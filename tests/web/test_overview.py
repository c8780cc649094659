"""The overview page: login required, stale data never counts as idle, what idle VMs hold,
actions of the last 24 h, open errors, the service's health, a fixed number of queries."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import CollectionRun, VirtualMachine
from idlevm.rules.models import ActionRecord
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db

# Session, user and the user's permissions (2, for the nav of base.html); then collection
# runs, host states, VMs by state (with the idle figures), actions, open errors count and rows.
OVERVIEW_QUERIES = 4 + 6


def page(client: Any) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return str(response.content.decode())


def run(minutes_ago: float, outcome: str = "ok", message: str = "") -> CollectionRun:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return CollectionRun.objects.create(
        started=started, finished=started + timedelta(seconds=2.5), outcome=outcome,
        message=message, hosts=2, vms=5,
    )  # fmt: skip


def action(outcome: str, hours_ago: float = 1, dry_run: bool = False) -> ActionRecord:
    return ActionRecord.objects.create(
        time=timezone.now() - timedelta(hours=hours_ago), rule_name="r", rule_expression="idle",
        vm_id=1, vm_name="vm1", vm_owner="alice", action="suspend", dry_run=dry_run,
        outcome=outcome,
    )  # fmt: skip


def test_anonymous_users_are_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_posting_is_refused(viewer_client, client):
    assert viewer_client.post("/").status_code == 405
    assert client.post("/").status_code == 302


def test_idle_data_from_a_host_clock_far_ahead_is_unknown_not_idle(viewer_client):
    now = int(time.time())
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=idle_record(received=now))]))
    VirtualMachine.objects.filter(id=1).update(idle_received=timezone.now() + timedelta(hours=2))
    figures = viewer_client.get("/").context["vms"]
    assert figures["idle_vms"] == 0 and figures["unknown"] == 1


def test_overview_counts_only_fresh_idle_vms(admin_client):
    now = int(time.time())
    collect_once(
        StaticSource(
            [host(0, vm_ids=(1, 2))],
            [vm(1, idle=idle_record(received=now)), vm(2, idle=idle_record(received=now - 7200))],
        )
    )
    response = admin_client.get("/")
    assert response.status_code == 200
    assert response.context["vms"]["idle_vms"] == 1
    assert response.context["vms"]["unknown"] == 1  # the stale one: neither idle nor busy
    assert "idle now (of 2 running)" in response.content.decode()
    assert "Idle data too old" in response.content.decode()  # VM 2's error is listed


def test_idle_vms_show_the_cpu_and_memory_they_hold(viewer_client, inventory):
    response = viewer_client.get("/")
    vms = response.context["vms"]
    # Only VM 1 is idle with fresh data: busy, stale, no-data and powered-off VMs hold nothing.
    held = (vms["running"], vms["idle_vms"], vms["idle_vcpu"], vms["idle_memory"])
    assert held == (4, 1, 2, 2048)
    content = response.content.decode()
    assert "2 <small>vCPU</small>" in content and "2.0 GiB" in content


def test_counts_hosts_and_vms_by_state(viewer_client, inventory):
    response = viewer_client.get("/")
    assert response.context["hosts_total"] == 2 and response.context["vms_total"] == 5
    states = {s.label: s.n for s in response.context["vm_states"]}
    assert states == {"ACTIVE/RUNNING": 4, "POWEROFF": 1}
    assert 'href="/vms/?state=ACTIVE/RUNNING">ACTIVE/RUNNING</a>' in response.content.decode()


def test_hosts_in_error_are_counted_in_red(viewer_client):
    collect_once(StaticSource([host(0), host(1, state=3)], []))
    content = page(viewer_client)
    assert '<span class="bad">1 in ERROR/OFFLINE</span>' in content
    assert '<span class="badge bad">ERROR</span>' in content


def test_actions_of_the_last_day_by_outcome_with_dry_run_apart(viewer_client, inventory):
    for outcome in ("done", "done", "failed"):
        action(outcome)
    action("would", dry_run=True)
    action("done", hours_ago=30)  # older than 24 h: not counted
    response = viewer_client.get("/")
    counts = {a.outcome: a.n for a in response.context["actions"]}
    assert counts == {"done": 2, "failed": 1, "skipped": 0, "pending": 0, "interrupted": 0}
    assert response.context["would"].n == 1
    assert response.context["actions_total"] == 3
    content = response.content.decode()
    assert "/actions/?outcome=done&amp;since=" in content
    assert "/actions/?outcome=would&amp;since=" in content


def test_open_errors_are_counted_listed_and_escaped(viewer_client):
    collect_once(StaticSource([host(0, vm_ids=(7,))], [vm(7, name="<script>x()</script>")]))
    response = viewer_client.get("/")
    assert response.context["errors_open"] == 1
    content = response.content.decode()
    assert "Running VM without idle data" in content
    assert "<script>x()" not in content and "&lt;script&gt;x()" in content
    error = response.context["errors"][0]
    assert f'href="/errors/{error.pk}/"' in content and 'href="/errors/"' in content


def test_warns_when_the_service_never_ran(viewer_client):
    content = page(viewer_client)
    assert 'class="banner warn"' in content and "has not run yet" in content


def test_warns_when_the_last_cycle_is_too_old(viewer_client, settings):
    settings.SUSPEND_SERVICE_INTERVAL = 300
    run(minutes_ago=16)  # more than 3 intervals
    content = page(viewer_client)
    assert 'class="banner warn"' in content and "has not run recently" in content
    assert 'class="banner bad"' not in content


def test_a_recent_successful_cycle_raises_no_warning(viewer_client, settings):
    settings.SUSPEND_SERVICE_INTERVAL = 300
    run(minutes_ago=12)  # within 3 intervals
    content = page(viewer_client)
    assert 'class="banner ok"' in content
    assert 'class="banner warn"' not in content and 'class="banner bad"' not in content
    assert "2.5 s" in content  # its duration


def test_a_failed_last_cycle_is_shown_in_red_with_its_message(viewer_client):
    run(minutes_ago=20)
    run(minutes_ago=1, outcome="failed", message="OpenNebula <unreachable>")
    content = page(viewer_client)
    assert 'class="banner bad"' in content
    assert "OpenNebula &lt;unreachable&gt;" in content
    assert "Last successful cycle" in content


def test_overview_query_count_does_not_grow_with_the_cloud(
    viewer_client, inventory, django_assert_num_queries
):
    with django_assert_num_queries(OVERVIEW_QUERIES):
        page(viewer_client)
    now = int(time.time())
    big = StaticSource(
        [host(i, name=f"h{i}", vm_ids=tuple(range(100 + 10 * i, 110 + 10 * i))) for i in range(20)],
        [vm(100 + n, host_id=n // 10, idle=idle_record(received=now)) for n in range(200)],
    )
    collect_once(big)
    for outcome in ("done", "failed", "would"):
        action(outcome, dry_run=outcome == "would")
    with django_assert_num_queries(OVERVIEW_QUERIES):
        page(viewer_client)


def test_a_cycle_stuck_running_for_too_long_is_a_warning(viewer_client, settings):
    settings.SUSPEND_SERVICE_INTERVAL = 60
    CollectionRun.objects.create(started=timezone.now() - timedelta(minutes=10))  # running
    content = page(viewer_client)
    assert 'class="banner warn"' in content and "still marked running" in content
