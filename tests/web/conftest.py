"""Console fixtures: logged-in clients with and without the operators' permissions, and a
small inventory collected the way the service collects it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from idlevm.inventory.collect import collect_once
from idlevm.web.permissions import OPERATORS
from tests.inventory.factories import StaticSource, host, idle_record, vm


@pytest.fixture
def viewer(db: Any) -> User:
    """An active user outside the operators group: may read, not edit."""
    return User.objects.create_user("viewer", password="viewer-pass-1")


@pytest.fixture
def operator(db: Any) -> User:
    user = User.objects.create_user("operator", password="operator-pass-1")
    user.groups.add(Group.objects.get(name=OPERATORS))
    return user


@pytest.fixture
def viewer_client(viewer: User) -> Client:
    client = Client()  # its own: a test may use both clients
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def inventory(db: Any) -> StaticSource:
    """Two hosts; VM 1 idle (fresh data), VM 2 busy, VM 3 stale, VM 4 without data,
    VM 5 powered off. Collected once (errors for VMs 3 and 4 are open)."""
    now = int(time.time())
    source = StaticSource(
        [host(0, vm_ids=(1, 2, 3)), host(1, vm_ids=(4,))],
        [
            vm(1, name="idle-web", idle=idle_record(received=now)),
            vm(2, name="busy-db", uname="bob", idle=idle_record(received=now, idle=False,
                                                                 idle_since=None, cpu=60.0)),
            vm(3, name="stale-batch", idle=idle_record(received=now - 7200)),
            vm(4, name="no-agent", host_id=1),
            vm(5, name="off-test", host_id=None, state=8, lcm_state=0),
        ],
    )  # fmt: skip
    collect_once(source)
    return source
