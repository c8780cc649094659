"""The operators' morning, in a real browser: log in, find an idle VM and its chart, write a
rule (a syntax error shown in place, fixed, previewed, saved), clear an error and see it
come back after a cycle. Every page is screenshot into var/screenshots/."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.contrib.auth.models import User

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import ErrorMessage, IdleSample
from idlevm.rules.models import Rule
from idlevm.web.permissions import operators_group
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "operator-pass-1"


@pytest.fixture
def cloud() -> StaticSource:
    """Collected twice, so the idle VM has two samples for its chart."""
    now = int(time.time())
    records = [
        vm(1, name="idle-web", idle=idle_record(received=now - 60, seq=1)),
        vm(2, name="busy-db", uname="bob",
           idle=idle_record(received=now, idle=False, idle_since=None, cpu=60.0)),
        vm(3, name="stale-batch", idle=idle_record(received=now - 7200)),
    ]  # fmt: skip
    source = StaticSource([host(0, vm_ids=(1, 2, 3))], records)
    collect_once(source)
    collect_once(source.with_vm(vm(1, name="idle-web", idle=idle_record(received=now, seq=2))))
    return source


@pytest.fixture
def logged_in(page: Any, cloud: StaticSource) -> Any:
    user = User.objects.create_user("olga", password=PASSWORD)
    user.groups.add(operators_group())  # a transactional test flushed the migration's
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page


def test_find_an_idle_vm_and_its_chart(logged_in: Any, shot: Any):
    page = logged_in
    shot("overview")
    page.click("nav >> text=VMs")
    shot("vms")
    page.click("text=idle-web")
    page.wait_for_url(re.compile(r"/vms/1/"))
    assert page.get_by_text("idle-web").first.is_visible()
    chart = page.locator("img[src*='chart.svg'], svg.chart").first
    chart.wait_for()
    if chart.evaluate("e => e.tagName") == "IMG":  # a chart that failed would be 0 wide
        assert chart.evaluate("e => e.complete && e.naturalWidth > 0")
    assert IdleSample.objects.filter(vm_id=1).count() == 2
    shot("vm-detail")
    page.click("nav >> text=Hosts")
    shot("hosts")


def test_write_a_rule_with_an_error_fix_it_preview_and_save(logged_in: Any, shot: Any):
    page = logged_in
    page.click("nav >> text=Rules")
    shot("rules-empty")
    page.click("text=New rule")
    page.fill("input[name=name]", "suspend idle web")
    page.check("input[name=all_vms]")
    page.fill("textarea[name=expression]", "idle and idle_for > minutes(30")
    page.get_by_role("button", name="Create").click()
    error = page.locator(".caret").first
    error.wait_for()
    assert Rule.objects.count() == 0
    shot("rule-syntax-error")
    page.fill("textarea[name=expression]", "idle and idle_for > minutes(30)")
    page.get_by_role("button", name=re.compile("Preview")).click()
    page.get_by_text("idle-web").first.wait_for()
    assert Rule.objects.count() == 0  # a preview saves nothing
    shot("rule-preview")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert Rule.objects.get().expression == "idle and idle_for > minutes(30)"
    shot("rule-saved")
    page.goto("/rules/reference/")
    shot("rule-reference")


def test_clear_an_error_and_see_it_come_back_after_a_cycle(
    logged_in: Any, shot: Any, cloud: StaticSource
):
    page = logged_in
    stale = ErrorMessage.objects.get(subject="vm:3", kind="idle_stale")
    page.click("nav >> text=Errors")
    shot("errors")
    page.goto(f"/errors/{stale.pk}/")
    page.get_by_role("button", name=re.compile("^Clear")).click()
    page.wait_for_load_state()
    stale.refresh_from_db()
    assert stale.cleared
    shot("error-cleared")
    collect_once(cloud)  # the next cycle: VM 3's data is still old
    page.goto(f"/errors/{stale.pk}/")
    stale.refresh_from_db()
    assert not stale.cleared
    assert page.get_by_text(re.compile("cleared", re.I)).first.is_visible()  # its history
    shot("error-back")
    page.click("nav >> text=Actions")
    shot("actions")
