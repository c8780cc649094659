"""The hosts list and a host's page: login required, what they show, 404, escaping, and a
number of queries that does not grow with the hosts or their VMs."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import ErrorMessage, VirtualMachine
from idlevm.web.views import hosts
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db

# Session, user and the user's permissions (2, for the nav of base.html), then the page's.
PER_REQUEST = 4
LIST_QUERIES = PER_REQUEST + 2  # hosts, VM figures grouped by host
DETAIL_QUERIES = PER_REQUEST + 4  # host, its VM figures, its VMs, its open errors


def get(client: Any, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return str(response.content.decode())


def cloud(hosts: int, vms_per_host: int) -> StaticSource:
    now = int(time.time())
    return StaticSource(
        [host(h, vm_ids=tuple(range(h * 100, h * 100 + vms_per_host))) for h in range(hosts)],
        [
            vm(h * 100 + i, host_id=h, idle=idle_record(received=now, idle=i % 2 == 0))
            for h in range(hosts)
            for i in range(vms_per_host)
        ],
    )


@pytest.mark.parametrize("url", ["/hosts/", "/hosts/0/"])
def test_anonymous_users_are_sent_to_login(client, inventory, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_list_shows_state_vms_idle_and_allocation_sorted_by_name(viewer_client, inventory):
    response = viewer_client.get("/hosts/")
    assert response.status_code == 200
    rows = {r.host.name: r for r in response.context["rows"]}
    assert [r.host.name for r in response.context["rows"]] == ["node0", "node1"]
    # node0: VMs 1 (idle), 2 (busy), 3 (stale); node1: VM 4 without data. VM 5 is off, nowhere.
    node0, node1 = rows["node0"].vms, rows["node1"].vms
    assert (node0["total"], node0["running"], node0["idle_vms"], node0["unknown"]) == (3, 3, 1, 1)
    assert (node1["total"], node1["running"], node1["idle_vms"], node1["unknown"]) == (1, 1, 0, 1)
    assert node1["newest"] is None and node0["newest"] is not None
    content = response.content.decode()
    assert 'href="/hosts/0/"' in content and "MONITORED" in content
    assert "2 / 8 CPU" in content and "4.0 GiB / 16.0 GiB" in content  # factory's HOST_SHARE


def test_hosts_in_error_or_offline_are_red_and_gone_hosts_hidden(viewer_client):
    collect_once(StaticSource([host(0), host(1, state=3), host(2, state=8), host(3)], []))
    collect_once(StaticSource([host(0), host(1, state=3), host(2, state=8)], []))  # 3 gone
    content = get(viewer_client, "/hosts/")
    assert content.count('class="badge bad"') == 2
    assert '<span class="badge bad">ERROR</span>' in content
    assert '<span class="badge bad">OFFLINE</span>' in content
    assert 'href="/hosts/3/"' not in content


def test_host_names_are_escaped(viewer_client):
    collect_once(StaticSource([host(0, name="<img src=x onerror=alert(1)>")], []))
    content = get(viewer_client, "/hosts/")
    assert "<img src=x" not in content and "&lt;img src=x" in content


def test_list_query_count_does_not_grow_with_hosts(viewer_client, django_assert_num_queries):
    collect_once(cloud(hosts=2, vms_per_host=3))
    with django_assert_num_queries(LIST_QUERIES):
        get(viewer_client, "/hosts/")
    collect_once(cloud(hosts=20, vms_per_host=5))
    with django_assert_num_queries(LIST_QUERIES):
        content = get(viewer_client, "/hosts/")
    assert len(re.findall(r'href="/hosts/\d+/"', content)) == 20


def test_unknown_host_is_404(viewer_client, inventory):
    assert viewer_client.get("/hosts/999/").status_code == 404


def test_detail_shows_facts_vms_and_their_idleness(viewer_client, inventory):
    response = viewer_client.get("/hosts/0/")
    assert response.status_code == 200
    assert [r.vm.id for r in response.context["vms"]] == [1, 2, 3]
    content = response.content.decode()
    for text in ("Host node0", "default", "2 / 8 CPU", "idle-web", "busy-db", "stale-batch"):
        assert text in content
    assert 'href="/vms/1/"' in content
    idle, busy, stale = response.context["vms"]
    assert idle.idle_for is not None and idle.idle_for >= 3600  # idle_since an hour ago
    assert busy.fresh and busy.idle_for is None and "busy" in content
    assert stale.stale and not stale.fresh and "stale data" in content
    assert "1 h 0 min" in content  # VM 1 idle for


def test_detail_lists_the_hosts_open_errors_only(viewer_client):
    collect_once(StaticSource([host(0, state=3), host(1, state=3)], []))
    ErrorMessage.objects.filter(subject="host:1").update(message="the other host")
    response = viewer_client.get("/hosts/0/")
    errors = response.context["errors"]
    assert [e.subject for e in errors] == ["host:0"]
    content = response.content.decode()
    assert "Host in ERROR or OFFLINE" in content and "the other host" not in content
    assert f'href="/errors/{errors[0].pk}/"' in content
    assert 'class="banner bad"' in content


def test_detail_escapes_vm_names_and_owners(viewer_client):
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, name="<b>x</b>", uname="<i>o</i>")]))
    content = get(viewer_client, "/hosts/0/")
    assert "<b>x</b>" not in content and "&lt;b&gt;x&lt;/b&gt;" in content
    assert "<i>o</i>" not in content


def test_detail_query_count_does_not_grow_with_vms(viewer_client, django_assert_num_queries):
    collect_once(cloud(hosts=1, vms_per_host=2))
    with django_assert_num_queries(DETAIL_QUERIES):
        get(viewer_client, "/hosts/0/")
    collect_once(cloud(hosts=1, vms_per_host=40))
    with django_assert_num_queries(DETAIL_QUERIES):
        content = get(viewer_client, "/hosts/0/")
    assert len(re.findall(r'href="/vms/\d+/"', content)) == 80  # id and name link to each VM


def test_a_gone_host_keeps_its_page_with_a_warning(viewer_client):
    collect_once(StaticSource([host(0), host(1)], []))
    collect_once(StaticSource([host(0)], []))
    content = get(viewer_client, "/hosts/1/")
    assert 'class="banner warn"' in content and "no longer in OpenNebula" in content


def test_detail_lists_a_bounded_number_of_vms(viewer_client, monkeypatch):
    monkeypatch.setattr(hosts, "HOST_VMS_SHOWN", 3)
    collect_once(cloud(hosts=1, vms_per_host=5))
    response = viewer_client.get("/hosts/0/")
    assert [r.vm.id for r in response.context["vms"]] == [0, 1, 2]
    assert "the first 3 of 5 by id" in response.content.decode()
    assert 'href="/vms/?host=0"' in response.content.decode()


@pytest.mark.parametrize("url", ["/hosts/", "/hosts/0/"])
def test_read_only_pages_refuse_post(viewer_client, client, inventory, url):
    assert viewer_client.post(url).status_code == 405
    anonymous = client.post(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_data_from_a_host_clock_far_ahead_is_neither_fresh_nor_idle(viewer_client):
    """As the VM list and the rules read it (the host's cards agree with its table)."""
    now = int(time.time())
    collect_once(StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=idle_record(received=now))]))
    VirtualMachine.objects.filter(id=1).update(idle_received=timezone.now() + timedelta(hours=2))
    response = viewer_client.get("/hosts/0/")
    (row,) = response.context["vms"]
    assert not row.fresh and row.stale and row.idle_for is None
    assert response.context["row"].vms["idle_vms"] == 0
    assert response.context["row"].vms["unknown"] == 1
    assert "stale data" in response.content.decode()
    listed = viewer_client.get("/hosts/").context["rows"][0].vms
    assert listed["idle_vms"] == 0 and listed["unknown"] == 1
