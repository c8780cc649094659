"""The VM pages: the list (filters as the service defines them, search, sorting, pages,
validation, fixed query counts), a VM's page (facts, rules now and why, actions) and its
chart."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.inventory.models import IdleSample, VirtualMachine
from idlevm.rules.cycle import context, live_vms
from idlevm.rules.engine import Limits, evaluate_rules, values_for
from idlevm.rules.fields import FIELDS, FUTURE_SKEW, is_exempt
from idlevm.rules.models import ActionRecord, Rule
from idlevm.web import vmlist, vmrules
from tests.inventory.factories import StaticSource, host, idle_record, vm

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert("owned")</script>'


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content.decode()[:2000]
    return [row.vm.id for row in response.context["rows"]]


def stored_vm(id: int, **kw: Any) -> VirtualMachine:
    """A VM row written directly (for states collection would not store as such)."""
    now = timezone.now()
    base: dict[str, Any] = dict(
        name=f"vm{id}", uid=1, owner="alice", gid=1, group="users", state=3,
        state_name="ACTIVE", lcm_state=3, lcm_state_name="RUNNING", host_id=0,
        host_name="node0", first_seen=now, last_seen=now,
    )  # fmt: skip
    base.update(kw)
    return VirtualMachine.objects.create(id=id, **base)


def rule(name: str, expression: str, **kw: Any) -> Rule:
    base: dict[str, Any] = dict(action="suspend", all_vms=True, dry_run=True)
    base.update(kw)
    return Rule.objects.create(name=name, expression=expression, **base)


def many(count: int) -> None:
    """`count` VMs collected on two hosts, a third of them idle, some stale, some busy."""
    now = int(time.time())
    vms = []
    for i in range(1, count + 1):
        record = [
            idle_record(received=now),
            idle_record(received=now, idle=False, idle_since=None, cpu=40.0 + i),
            idle_record(received=now - 7200),
        ][i % 3]
        vms.append(vm(i, host_id=i % 2, uname=["alice", "bob"][i % 2], idle=record))
    collect_once(StaticSource([host(0), host(1)], vms))


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/vms/", "/vms/1/", "/vms/1/chart.svg"])
def test_pages_need_a_login(client, inventory, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- the list -----------------------------------------------------------------------------------


def test_the_list_shows_each_vm_with_its_columns(viewer_client, inventory):
    response = viewer_client.get("/vms/")
    assert ids(response) == [1, 2, 3, 4, 5]
    page = response.content.decode()
    for text in ("idle-web", "busy-db", "node0", "bob", "ACTIVE/RUNNING", "POWEROFF",
                 "1 h 0 min", "busy", "60.0", "100 B/s / 50 B/s", "stale", "of 5 VMs"):  # fmt: skip
        assert text in page, text
    assert response.context["section"] == "vms"


def test_idle_and_stale_follow_the_service(viewer_client, inventory):
    """Only fresh data says idle or busy; stale or missing data is neither."""
    assert ids(viewer_client.get("/vms/?idle=yes")) == [1]
    assert ids(viewer_client.get("/vms/?idle=no")) == [2]
    assert ids(viewer_client.get("/vms/?stale=yes")) == [3, 4, 5]
    assert ids(viewer_client.get("/vms/?stale=no")) == [1, 2]


def test_freshness_in_sql_agrees_with_the_rules_context():
    ctx = context()
    second = timedelta(seconds=1)
    offsets = [None, 0 * second, -second, second, -ctx.stale_after, -ctx.stale_after - second,
               -timedelta(days=3), FUTURE_SKEW, FUTURE_SKEW + second]  # fmt: skip
    for i, offset in enumerate(offsets, 1):
        received = None if offset is None else ctx.now + offset
        stored_vm(i, idle=True, idle_received=received, idle_since=ctx.now)
    everything = list(VirtualMachine.objects.all())
    fresh = {v.id for v in everything if ctx.fresh(v)}
    assert fresh == {2, 3, 4, 5, 8}  # the boundaries included
    assert {v.id for v in VirtualMachine.objects.filter(vmlist.fresh_q(ctx))} == fresh
    assert {v.id for v in VirtualMachine.objects.filter(vmlist.stale_q(ctx))} == (
        {v.id for v in everything} - fresh
    )


def test_exemption_in_sql_agrees_with_is_exempt():
    values = ["YES", "yes", " Yes ", "yes\n", "\tYES\t", "NO", "", "Y ES", "YESS", "no yes",
              "yes!", None, True, 1, ["YES"]]  # fmt: skip
    for i, value in enumerate(values, 1):
        stored_vm(i, user_template={} if value is None else {"IDLEVM_EXEMPT": value})
    stored_vm(99, user_template={"OTHER": "YES"})
    everything = list(VirtualMachine.objects.all())
    expected = {v.id for v in everything if is_exempt(v)}
    assert expected == {1, 2, 3, 4, 5}
    assert {v.id for v in VirtualMachine.objects.filter(vmlist.exempt_q())} == expected
    assert {v.id for v in VirtualMachine.objects.exclude(vmlist.exempt_q())} == (
        {v.id for v in everything} - expected
    )


def test_exempt_filter(viewer_client, inventory):
    VirtualMachine.objects.filter(id=2).update(user_template={"IDLEVM_EXEMPT": "yes"})
    assert ids(viewer_client.get("/vms/?exempt=yes")) == [2]
    assert ids(viewer_client.get("/vms/?exempt=no")) == [1, 3, 4, 5]
    assert "exempt</span>" in viewer_client.get("/vms/").content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [("IDLE-", [1]), ("2", [2]), ("#3", [3]), ("bob", [2]), ("node1", [4]), ("zzz", [])],
)
def test_search_by_name_id_owner_or_host(viewer_client, inventory, query, expected):
    assert ids(viewer_client.get("/vms/", {"q": query})) == expected


def test_state_host_and_owner_filters(viewer_client, inventory):
    assert ids(viewer_client.get("/vms/?state=POWEROFF")) == [5]
    assert ids(viewer_client.get("/vms/?state=active/running")) == [1, 2, 3, 4]
    assert ids(viewer_client.get("/vms/?state=ACTIVE/BOOT")) == []
    assert ids(viewer_client.get("/vms/?host=1")) == [4]
    assert ids(viewer_client.get("/vms/?host=none")) == [5]
    assert ids(viewer_client.get("/vms/?owner=bob")) == [2]
    assert ids(viewer_client.get("/vms/?owner=alice&host=0&idle=yes")) == [1]


def test_gone_vms_are_listed_on_request(viewer_client, inventory):
    VirtualMachine.objects.filter(id=5).update(gone_at=timezone.now())
    assert ids(viewer_client.get("/vms/")) == [1, 2, 3, 4]
    assert ids(viewer_client.get("/vms/?show=gone")) == [5]
    assert ids(viewer_client.get("/vms/?show=all")) == [1, 2, 3, 4, 5]


def python_key(key: str) -> Any:
    def get(row: vmlist.Row) -> Any:
        vm = row.vm
        net = (
            None if row.net_rx is None and row.net_tx is None
            else (row.net_rx or 0) + (row.net_tx or 0)
        )  # fmt: skip
        return {
            "id": vm.id, "name": vm.name, "owner": vm.owner, "host": vm.host_name or None,
            "state": (vm.state_name, vm.lcm_state_name), "idle_for": row.idle_for,
            "cpu": row.cpu_pct, "net": net, "age": row.data_age,
        }[key]  # fmt: skip

    return get


@pytest.mark.parametrize("key", list(vmlist.COLUMNS))
def test_sorting_by_each_column_both_ways_keeps_missing_values_last_and_ties_by_id(
    viewer_client, key
):
    now = int(time.time())
    records = [
        idle_record(received=now, idle_since=now - 3600),
        idle_record(received=now, idle_since=now - 3600),  # a tie
        idle_record(received=now - 60, idle_since=now - 7200, cpu=3.0, net_rx=5.0),
        idle_record(received=now, idle=False, idle_since=None, cpu=70.0, net_tx=None),
        idle_record(received=now, idle=False, idle_since=None, cpu=70.0),  # a tie
        idle_record(received=now - 7200),  # stale: no idle for, CPU or net
        None,
    ]
    vms = [
        vm(10 + i, name=["web", "db", "web", "ci", "db", "app", "app"][i], host_id=i % 3,
           uname=["carol", "alice", "bob"][i % 3], idle=rec, state=3 if i != 6 else 8,
           lcm_state=3 if i != 6 else 0)
        for i, rec in enumerate(records)
    ]  # fmt: skip
    collect_once(StaticSource([host(0), host(1), host(2)], vms))
    for descending in (False, True):
        response = viewer_client.get("/vms/", {"sort": f"{'-' if descending else ''}{key}"})
        rows = response.context["rows"]
        get = python_key(key)
        present = sorted((r for r in rows if get(r) is not None), key=lambda r: r.vm.id)
        # Stable, also reversed: within ties the ids stay ascending, as in the SQL.
        present.sort(key=get, reverse=descending)
        missing = sorted(r.vm.id for r in rows if get(r) is None)
        expected = [r.vm.id for r in present] + missing
        assert ids(response) == expected, (key, descending)


def test_sort_headers_link_to_the_other_direction_and_keep_the_filters(viewer_client, inventory):
    page = viewer_client.get("/vms/?owner=alice&sort=name").content.decode()
    assert 'href="?owner=alice&amp;sort=-name"' in page
    assert 'href="?owner=alice&amp;sort=-idle_for"' in page


def test_pages_keep_the_filters_and_a_deep_page_works(viewer_client):
    many(90)
    first = viewer_client.get("/vms/?owner=alice&per=25")
    assert len(ids(first)) == 25 and first.context["total"] == 45
    page = first.content.decode()
    assert 'href="?owner=alice&amp;per=25&amp;page=2"' in page
    assert ids(viewer_client.get("/vms/?owner=alice&per=25&page=2")) == list(range(52, 91, 2))
    assert len(ids(viewer_client.get("/vms/?per=25&page=4"))) == 15
    # Past the end (the list shrank since the link was made): the last page.
    past = viewer_client.get("/vms/?per=25&page=400")
    assert past.context["page"].number == 4 and len(ids(past)) == 15


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sort=bogus", "sort"), ("idle=maybe", "idle"), ("state=RUNNING", "unknown state"),
        ("state=ACTIVE/NOPE", "unknown state"), ("host=node0", "host id"), ("per=7", "per"),
        ("page=0", "page"), ("page=x", "page"), ("rule=abc", "rule"),
        ("rule=999", "there is no rule #999"), ("show=x", "show"),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_400_that_says_why(viewer_client, inventory, query, message):
    response = viewer_client.get(f"/vms/?{query}")
    assert response.status_code == 400
    page = response.content.decode()
    assert "a filter is not valid" in page and message in page
    assert '<table class="vms">' not in page


@pytest.mark.parametrize("count", [3, 30])
@pytest.mark.parametrize(
    ("query", "rows"),
    [("", {3: 3, 30: 30}),
     # fresh idle VMs (i % 3 == 0) of bob on host 1 (odd i)
     ("idle=yes&stale=no&exempt=no&sort=-idle_for&q=vm&host=1&owner=bob", {3: 1, 30: 5}),
     ("sort=-net&per=25&page=1", {3: 3, 30: 25}),
     ("rule=RULE&sort=name", {3: 1, 30: 10})],
)  # fmt: skip
def test_the_list_takes_a_fixed_number_of_queries(
    viewer_client, django_assert_num_queries, count, query, rows
):
    """session + user + rules + hosts + states + count + page + the user's two permission
    queries (the nav); the rule filter reads the filtered VMs (the columns the rule needs)
    instead of counting them, then the page's rows."""
    many(count)
    found = rule("idle-ones", "idle")
    query = query.replace("RULE", str(found.pk))
    with django_assert_num_queries(9):
        response = viewer_client.get(f"/vms/?{query}")
    assert len(ids(response)) == rows[count]


def test_the_rule_filter_agrees_with_the_cycle(viewer_client):
    many(30)
    rules = [
        rule("idle", "idle"),
        rule("bob busy", "cpu_pct > 50", all_vms=False, owners=["bob"]),
        rule("by name", 'name.startswith("vm1")', all_vms=False, name_pattern="vm1*"),
    ]
    evaluation = evaluate_rules(rules, live_vms(), context(), Limits(10**6, 100.0))
    for r, result in zip(rules, evaluation.results, strict=True):
        response = viewer_client.get(f"/vms/?rule={r.pk}&per=200")
        assert len(ids(response)) == result.matched > 0, r.name
        assert f"matches {result.matched} of the 30 VMs" in response.content.decode()


def test_the_rule_filter_loads_every_column_a_field_reads(inventory, django_assert_num_queries):
    ctx = context()
    reference = VirtualMachine.objects.get(id=1)
    for name in [*FIELDS, "user_attr"]:
        columns = vmrules.rule_columns({name})
        [row] = VirtualMachine.objects.filter(id=1).values_list(*columns)
        with django_assert_num_queries(0):
            value = values_for(vmrules.bare_vm(columns, row), {name}, ctx)[name]
        expected = values_for(reference, {name}, ctx)[name]
        if name == "user_attr":
            value, expected = value("IDLEVM_EXEMPT"), expected("IDLEVM_EXEMPT")
        assert value == expected, name


def test_the_rule_filter_combines_with_the_others(viewer_client, inventory):
    found = rule("idle", "idle or cpu_pct > 50")
    assert ids(viewer_client.get(f"/vms/?rule={found.pk}")) == [1, 2]
    assert ids(viewer_client.get(f"/vms/?rule={found.pk}&owner=bob")) == [2]
    assert ids(viewer_client.get(f"/vms/?rule={found.pk}&sort=-name")) == [1, 2]


def test_an_invalid_rule_matches_nothing_and_says_why(viewer_client, inventory):
    broken = rule("broken", "idle and")  # saved past validation (an older version, say)
    response = viewer_client.get(f"/vms/?rule={broken.pk}")
    assert ids(response) == []
    assert "is invalid and matches no VM" in response.content.decode()


def test_names_from_vm_owners_are_escaped_in_the_list(viewer_client, inventory):
    VirtualMachine.objects.filter(id=1).update(name=HOSTILE, owner=HOSTILE)
    page = viewer_client.get("/vms/").content.decode()
    assert HOSTILE not in page and "&lt;script&gt;" in page


# --- one VM -------------------------------------------------------------------------------------


def test_an_unknown_vm_is_a_404(viewer_client, inventory):
    assert viewer_client.get("/vms/999/").status_code == 404
    assert viewer_client.get("/vms/999/chart.svg").status_code == 404


def test_the_vm_page_shows_its_facts_and_idle_data(viewer_client, inventory):
    VirtualMachine.objects.filter(id=1).update(
        user_template={"DESCRIPTION": HOSTILE, "IDLEVM_EXEMPT": "no"},
        monitoring={"CPU": "1.5", HOSTILE: "x"},
    )
    response = viewer_client.get("/vms/1/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("idle-web", "ACTIVE / RUNNING", 'href="/hosts/0/"', "alice", "2048 MiB",
                 "idle for 1 h 0 min", "fresh", 'src="/vms/1/chart.svg?range=24h"',
                 "DESCRIPTION"):  # fmt: skip
        assert text in page, text
    assert HOSTILE not in page and "&lt;script&gt;" in page


def test_the_vm_page_says_when_data_is_stale_or_missing(viewer_client, inventory):
    assert "unknown: the data is stale" in viewer_client.get("/vms/3/").content.decode()
    assert "No idle record yet" in viewer_client.get("/vms/4/").content.decode()


def test_the_chart_tab_chooses_the_range(viewer_client, inventory):
    page = viewer_client.get("/vms/1/?range=7d").content.decode()
    assert 'src="/vms/1/chart.svg?range=7d"' in page and 'href="?range=24h"' in page
    assert (
        'src="/vms/1/chart.svg?range=24h"' in viewer_client.get("/vms/1/?range=1y").content.decode()
    )


def verdict_of(page: str, rule_name: str) -> str:
    """The text of the rule's row (tags dropped)."""
    match = re.search(rf">{re.escape(rule_name)}</a>(.*?)</tr>", page, re.S)
    assert match, rule_name
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1)))


def test_the_vm_page_explains_each_enabled_rule(viewer_client, inventory):
    rule("idle suspends", "idle and idle_for > hours(0.5)", dry_run=False)
    rule("busy ones", "cpu_pct > 50")
    rule("not mine", "idle", all_vms=False, owners=["carol"])
    rule("off ones", "stale", action="suspend")
    rule("disabled", "idle", enabled=False)
    rule("broken", "idle and")
    page = viewer_client.get("/vms/1/").content.decode()
    row = verdict_of(page, "idle suspends")
    assert "yes" in row and "would suspend" in row and "idle_for = 1 h 0 min" in row
    assert "dry run" not in row
    assert "no match" in verdict_of(page, "busy ones")
    assert "cpu_pct = 0.5" in verdict_of(page, "busy ones")
    assert "not in its scope" in verdict_of(page, "not mine")
    assert "invalid" in verdict_of(page, "broken")
    assert "disabled" not in page
    stale = viewer_client.get("/vms/3/").content.decode()
    assert "unknown (missing data)" in verdict_of(stale, "idle suspends")
    assert "idle = missing" in verdict_of(stale, "idle suspends")
    off = viewer_client.get("/vms/5/").content.decode()
    assert "does not apply in state POWEROFF" in verdict_of(off, "off ones")


def test_exemption_and_cooldown_hold_a_matching_rule_back(viewer_client, inventory):
    live = rule("live", "idle", dry_run=False, cooldown=timedelta(hours=2))
    dry = rule("dry", "idle", cooldown=timedelta(hours=2))
    for r in (live, dry):
        ActionRecord.objects.create(
            time=timezone.now() - timedelta(minutes=30), rule=r, rule_name=r.name,
            rule_expression=r.expression, vm_id=1, vm_name="idle-web", vm_owner="alice",
            action="suspend", dry_run=True, outcome=ActionRecord.Outcome.WOULD,
        )  # fmt: skip
    page = viewer_client.get("/vms/1/").content.decode()
    # A would-be action holds only a rule in dry run (engine.cooling_vms).
    assert "would suspend" in verdict_of(page, "live")
    assert "in its cooldown until" in verdict_of(page, "dry")
    VirtualMachine.objects.filter(id=1).update(user_template={"IDLEVM_EXEMPT": "YES"})
    page = viewer_client.get("/vms/1/").content.decode()
    assert "matches, but the VM is exempt" in verdict_of(page, "live")


def test_the_vm_page_lists_its_actions_newest_first(viewer_client, inventory):
    base = timezone.now() - timedelta(days=1)
    for i in range(25):
        ActionRecord.objects.create(
            time=base + timedelta(minutes=i), rule_name=f"rule{i:02}", rule_expression="idle",
            vm_id=1, vm_name="idle-web", vm_owner="alice", action="suspend", dry_run=False,
            outcome=ActionRecord.Outcome.DONE, message=HOSTILE if i == 24 else "",
        )  # fmt: skip
    ActionRecord.objects.create(
        time=base, rule_name="other vm", rule_expression="idle", vm_id=2, vm_name="busy-db",
        vm_owner="bob", action="suspend", dry_run=False, outcome=ActionRecord.Outcome.DONE,
    )  # fmt: skip
    page = viewer_client.get("/vms/1/").content.decode()
    shown = re.findall(r"rule(\d\d)", page)
    assert shown == [f"{i:02}" for i in range(24, 4, -1)]  # 20 newest
    assert "other vm" not in page and HOSTILE not in page
    assert 'href="/actions/?vm=1"' in page and "All actions on this VM" in page


@pytest.mark.parametrize("count", [1, 10])
def test_the_vm_page_takes_a_fixed_number_of_queries(
    viewer_client, inventory, django_assert_num_queries, count
):
    """session + user + VM + open errors + rules + cooldown records + actions + the user's
    two permission queries (the nav)."""
    for i in range(count):
        r = rule(f"rule {i}", "idle")
        ActionRecord.objects.create(
            time=timezone.now(), rule=r, rule_name=r.name, rule_expression="idle", vm_id=1,
            vm_name="idle-web", vm_owner="alice", action="suspend", dry_run=True,
            outcome=ActionRecord.Outcome.WOULD,
        )  # fmt: skip
    with django_assert_num_queries(9):
        assert viewer_client.get("/vms/1/").status_code == 200


# --- the chart ----------------------------------------------------------------------------------


def test_the_chart_is_an_svg_of_the_samples(viewer_client, inventory):
    now = timezone.now()
    IdleSample.objects.bulk_create(
        IdleSample(vm_id=1, seq=i + 10, agent_time=i, received=now - timedelta(minutes=i),
                   idle=i > 20, cpu_pct=float(i))
        for i in range(1, 50)
    )  # fmt: skip
    assert IdleSample.objects.filter(vm_id=1).count() == 50
    response = viewer_client.get("/vms/1/chart.svg?range=24h")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    svg = response.content.decode()
    assert "<polyline" in svg and "50 samples" in svg and "times in UTC" in svg
    assert "7 days" in viewer_client.get("/vms/1/chart.svg?range=7d").content.decode()


def test_a_chart_without_samples_says_so(viewer_client, inventory):
    svg = viewer_client.get("/vms/4/chart.svg").content.decode()
    assert "no data in this range" in svg


@pytest.mark.parametrize("value", ["30d", "", "24H", "<x>"])
def test_a_chart_range_other_than_24h_or_7d_is_a_400(viewer_client, inventory, value):
    response = viewer_client.get("/vms/1/chart.svg", {"range": value})
    assert response.status_code == 400 and b"24h, 7d" in response.content


def test_the_chart_escapes_the_vm_name(viewer_client, inventory):
    VirtualMachine.objects.filter(id=1).update(name=HOSTILE)
    svg = viewer_client.get("/vms/1/chart.svg").content.decode()
    assert HOSTILE not in svg and "&lt;script&gt;" in svg


def test_the_chart_shows_times_in_the_operators_zone(viewer_client, inventory, settings):
    settings.TIME_ZONE = "Asia/Kolkata"
    svg = viewer_client.get("/vms/1/chart.svg").content.decode()
    assert "times in Asia/Kolkata" in svg
    labels = re.findall(r">(\d\d):(\d\d)</text>", svg)
    assert labels and all(m == "00" and int(h) % 3 == 0 for h, m in labels)


# --- hostile parameters and methods -------------------------------------------------------------


@pytest.mark.parametrize("q", ["²", "#²", "٣", "99999999999999999999999"])
def test_search_for_non_ascii_digits_or_huge_numbers_is_text(viewer_client, q):
    many(3)
    assert ids(viewer_client.get("/vms/", {"q": q})) == []


@pytest.mark.parametrize(
    "query", ["host=²", "host=٣", "host=99999999999999999999999", "rule=99999999999999999999999"]
)
def test_bad_ids_in_filters_are_a_400_not_a_500(viewer_client, query):
    many(3)
    response = viewer_client.get(f"/vms/?{query}")
    assert response.status_code == 400
    assert "a filter is not valid" in response.content.decode()


@pytest.mark.parametrize("url", ["/vms/", "/vms/1/", "/vms/1/chart.svg"])
def test_read_only_pages_refuse_post(viewer_client, client, inventory, url):
    assert viewer_client.post(url).status_code == 405
    anonymous = client.post(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
