"""The rule preview: the engine's verdict on the stored VMs, why each matched VM would or would
not be acted on, and nothing recorded."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.rules.models import ActionRecord, Rule, RuleChange
from idlevm.web import preview
from tests.inventory.factories import idle_record, vm

pytestmark = pytest.mark.django_db

IDLE_30MIN = "idle and idle_for > minutes(30)"


def form_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "suspend-idle", "expression": IDLE_30MIN, "action": "suspend", "dry_run": "on",
        "enabled": "on", "all_vms": "on", "max_actions_per_cycle": "10", "cooldown": "1h",
        "order": "100", "preview": "1",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def group(page: str, key: str) -> str:
    """The heading and table of one preview group ("" when absent)."""
    found = re.search(rf'<h3 id="preview-{key}">(.*?)</table>', page, re.S)
    return found.group(1) if found else ""


@pytest.fixture
def page(operator_client, inventory):
    def post(url: str = "/rules/new/", **overrides: object) -> str:
        response = operator_client.post(url, form_data(**overrides))
        assert response.status_code == 200
        return str(response.content.decode())

    return post


def test_preview_lists_matches_and_unknowns_and_saves_nothing(page):
    text = page()
    assert 'id="preview"' in text and "4 of 5 VMs in scope" not in text
    assert "5 of 5 VMs in scope; the expression matches 1 of them" in text
    assert "the rule would record (dry run) <strong>1</strong>" in text
    act = group(text, "act")
    assert "Would act on: 1" in act and "idle-web" in act and "busy-db" not in act
    unknown = group(text, "unknown")
    assert "Unknown" in unknown and ": 3" in unknown  # stale, no agent, powered off
    assert "stale-batch" in unknown and "stale idle data (120 min old)" in unknown
    assert "no-agent" in unknown and "no idle data" in unknown
    assert "busy-db" not in text.split('id="preview"')[1]  # false: not listed
    assert not Rule.objects.exists() and not RuleChange.objects.exists()
    assert not ActionRecord.objects.exists()


def test_preview_of_an_edit_changes_neither_the_rule_nor_its_last_cycle(page, operator_client):
    rule = Rule.objects.create(
        name="r", expression="idle", action="log", all_vms=True, last_cycle={"matched": 9}
    )
    text = page(f"/rules/{rule.pk}/", name="renamed", expression=IDLE_30MIN)
    assert "Would act on: 1" in text
    assert 'value="renamed"' in text and "Rule r</h1>" in text  # the form keeps the edit
    rule.refresh_from_db()
    assert (rule.name, rule.expression, rule.last_cycle) == ("r", "idle", {"matched": 9})
    assert not RuleChange.objects.exists() and not ActionRecord.objects.exists()


def test_preview_with_an_invalid_expression_shows_the_error_instead(page):
    text = page(expression="idle and idle_for > 30")
    assert "Line 1, column 10:" in text and "cannot order a duration" in text
    assert "Correct the problems above" in text and not Rule.objects.exists()


def test_preview_explains_state_exemption_cooldown_and_claims(page, inventory):
    now = int(time.time())
    exempt = vm(6, name="exempt-vm", user_template={"IDLEVM_EXEMPT": "yes"},
                idle=idle_record(received=now))  # fmt: skip
    collect_once(inventory.with_vm(exempt))
    rule = Rule.objects.create(name="r", expression=IDLE_30MIN, action="suspend", all_vms=True)
    ActionRecord.objects.create(
        time=timezone.now() - timedelta(minutes=10), rule=rule, rule_name="r",
        rule_expression=IDLE_30MIN, vm_id=1, vm_name="idle-web", vm_owner="alice",
        action="suspend", dry_run=True, outcome=ActionRecord.Outcome.WOULD,
    )  # fmt: skip
    text = page(f"/rules/{rule.pk}/", name="r")
    assert "idle-web" in group(text, "cooling") and "exempt-vm" in group(text, "exempt")
    assert not group(text, "act")
    text = page(f"/rules/{rule.pk}/", name="r", cooldown="0s")
    assert "idle-web" in group(text, "act")  # no cooldown: acted on again
    text = page(name="hold-idle", action="hold")
    assert "applies in PENDING" in group(text, "state")
    Rule.objects.create(name="first", expression="idle", action="log", all_vms=True, order=1)
    broken = Rule.objects.create(name="broken", expression="idle", action="log", all_vms=True,
                                 order=300)  # fmt: skip
    Rule.objects.filter(pk=broken.pk).update(expression="idle >")  # invalid since saved
    text = page(name="second", order="200")
    assert "idle-web" in group(text, "claimed")


def test_preview_shows_the_rule_limit_and_the_global_limit(page, settings):
    text = page(max_actions_per_cycle="0")
    assert "No action this cycle: matched 1 VMs to act on, more than its limit of 0" in text
    assert "idle-web" in group(text, "limit")
    settings.MAX_ACTIONS_PER_CYCLE = 0
    text = page(dry_run=None)
    assert "No action this cycle: global limit" in text and "idle-web" in group(text, "limit")
    text = page()  # a dry-run rule does not count towards the global limit
    assert "idle-web" in group(text, "act")


def test_preview_scope_limits_what_is_evaluated(page):
    text = page(all_vms=None, owners="bob", expression="not idle")
    assert "1 of 5 VMs in scope; the expression matches 1 of them" in text
    assert "busy-db" in group(text, "act") and "idle-web" not in text.split('id="preview"')[1]


def test_preview_listing_is_bounded_with_counts(page, monkeypatch):
    monkeypatch.setattr(preview, "SHOWN", 1)
    text = page(expression="idle is None", action="log")
    unknown, matched = group(text, "unknown"), group(text, "act")
    assert not unknown and ": 3" in matched  # "idle is None" is true, not unknown
    assert "… and 2 more (the first 1 are listed)" in text


def test_anyone_may_preview_the_saved_rule_with_get(viewer_client, inventory):
    rule = Rule.objects.create(name="r", expression=IDLE_30MIN, action="suspend", all_vms=True)
    text = viewer_client.get(f"/rules/{rule.pk}/?preview=1").content.decode()
    assert "Would act on: 1" in text and "idle-web" in text
    assert not ActionRecord.objects.exists()
    rule.refresh_from_db()
    assert rule.last_cycle == {}


def test_disabled_rules_preview_with_a_warning(page):
    text = page(enabled=None)
    assert "This rule is disabled" in text and "Would act on: 1" in text


def test_a_stored_rule_that_became_invalid_says_so_instead_of_previewing(viewer_client, inventory):
    rule = Rule.objects.create(name="r", expression="idle", action="suspend", all_vms=True)
    Rule.objects.filter(pk=rule.pk).update(expression="idle >")
    text = viewer_client.get(f"/rules/{rule.pk}/?preview=1").content.decode()
    assert "This rule is invalid: every cycle skips it." in text and "syntax error" in text
    assert "Correct the problems above" in text and "Would act on" not in text
