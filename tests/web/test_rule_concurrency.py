"""Two operators editing one rule, and the service writing its last cycle meanwhile."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from idlevm.rules.models import Rule

pytestmark = pytest.mark.django_db


def form_data(page: str, **changes: str) -> dict[str, str]:
    data = dict(
        re.findall(r'<input type="(?:text|number|hidden)" name="(\w+)" value="([^"]*)"', page)
    )
    data.update(
        name="nightly", expression="idle", action="suspend", all_vms="on", cooldown="1h",
        max_actions_per_cycle="10", order="100", dry_run="on", enabled="on",
    )  # fmt: skip
    data.pop("csrfmiddlewaretoken", None)
    data.update(changes)
    return data


def test_an_edit_based_on_an_old_version_is_refused_not_silently_applied(operator_client):
    rule = Rule.objects.create(name="nightly", expression="idle", all_vms=True)
    first = operator_client.get(f"/rules/{rule.pk}/").content.decode()
    second = operator_client.get(f"/rules/{rule.pk}/").content.decode()
    saved = operator_client.post(f"/rules/{rule.pk}/", form_data(first, description="mine"))
    assert saved.status_code == 302
    stale = operator_client.post(f"/rules/{rule.pk}/", form_data(second, description="theirs"))
    assert stale.status_code == 200
    assert "Someone changed this rule since you opened it" in stale.content.decode()
    rule.refresh_from_db()
    assert rule.description == "mine"


def test_saving_a_rule_writes_only_what_the_form_edits(operator_client):
    # The service writes last_cycle with its own UPDATE while an operator may be saving: the
    # console's UPDATE must not carry last_cycle (a value read before the service's write).
    rule = Rule.objects.create(name="nightly", expression="idle", all_vms=True)
    page = operator_client.get(f"/rules/{rule.pk}/").content.decode()
    with CaptureQueriesContext(connection) as queries:
        response = operator_client.post(f"/rules/{rule.pk}/", form_data(page, description="x"))
    assert response.status_code == 302
    updates = [
        q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "rules_rule" in q["sql"]
    ]
    assert len(updates) == 1 and "last_cycle" not in updates[0]
    rule.refresh_from_db()
    assert rule.description == "x"
