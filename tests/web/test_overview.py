"""The overview page: login required, and stale data never counts as idle."""

from __future__ import annotations

import time

import pytest

from idlevm.inventory.collect import collect_once
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db


def test_anonymous_users_are_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]


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
    assert "(1 idle)" in response.content.decode()
    assert "Idle data too old" in response.content.decode()  # VM 2's error is listed
