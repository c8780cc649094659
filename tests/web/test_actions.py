"""Action history: the filtered, paginated list and the streamed CSV export (same filters,
UTC times, no spreadsheet formulas from VM-controlled text)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from idlevm.rules.models import ActionRecord, Rule

pytestmark = pytest.mark.django_db

PER_REQUEST = 4  # session, user, the user's permissions (2, for the nav)
LIST_QUERIES = PER_REQUEST + 3  # the paginator's count, the page, the rule names
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def action(**kw: Any) -> ActionRecord:
    base: dict[str, Any] = dict(
        time=T0, rule_name="idle-4h", rule_expression="idle and idle_for > hours(4)", vm_id=1,
        vm_name="vm1", vm_owner="alice", vm_group="users", vm_host="node0", action="suspend",
        dry_run=False, outcome="done", state_before="ACTIVE/RUNNING", state_after="SUSPENDED",
        evidence={"idle": True, "idle_for": 18000}, finished=T0,
    )  # fmt: skip
    base.update(kw)
    return ActionRecord.objects.create(**base)


def many(n: int, **kw: Any) -> None:
    ActionRecord.objects.bulk_create(
        ActionRecord(
            time=T0 - timedelta(minutes=i), rule_name="bulk", rule_expression="idle",
            vm_id=1000 + i, vm_name=f"vm{i}", vm_owner="carol", action="log", dry_run=True,
            outcome="would", evidence={}, **kw,
        )
        for i in range(n)
    )  # fmt: skip


def vm_ids(response: Any) -> list[int]:
    assert response.status_code == 200
    return [r.vm_id for r in response.context["page"]]


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/actions/", "/actions.csv"])
def test_anonymous_users_are_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("url", ["/actions/", "/actions.csv"])
def test_viewers_read_and_posting_is_refused(viewer_client, url):
    action()
    assert viewer_client.get(url).status_code == 200
    assert viewer_client.post(url).status_code == 405


# --- the list ------------------------------------------------------------------------------


def test_list_shows_the_snapshots_outcome_and_evidence(viewer_client):
    rule = Rule.objects.create(name="idle-4h", expression="idle", action="suspend")
    action(rule=rule, message="suspended fine")
    action(vm_id=2, vm_name="old", rule_name="gone-rule", outcome="failed", time=T0 - timedelta(1))
    page = viewer_client.get("/actions/").content.decode()
    assert f'<a href="/rules/{rule.id}/">idle-4h</a>' in page
    assert 'gone-rule <span class="muted">(deleted)</span>' in page
    assert '<a href="/vms/1/">#1</a> vm1' in page and "alice" in page and "node0" in page
    assert '<span class="badge done">done</span>' in page
    assert '<span class="badge failed">failed</span>' in page
    assert "suspended fine" in page and "<time " in page
    assert "<details" in page and "ACTIVE/RUNNING → SUSPENDED" in page
    assert "idle_for" in page and "18000" in page and "idle and idle_for &gt; hours(4)" in page
    assert page.index("#1</a> vm1") < page.index("#2</a> old")  # newest first


def test_vm_controlled_text_is_escaped(viewer_client):
    action(vm_name="<img src=x onerror=alert(1)>", message="<b>x</b>", evidence={"n": "<i>"})
    page = viewer_client.get("/actions/").content.decode()
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "<b>x</b>" not in page and "<i>" not in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vm=2", [2]),
        ("owner=bob", [3]),
        ("action=poweroff", [3]),
        ("outcome=failed", [2]),
        ("dry_run=yes", [4]),
        ("dry_run=no", [1, 2, 3]),
        ("rule=other", [3]),
        ("owner=alice&outcome=done", [1]),
        ("", [1, 2, 3, 4]),
    ],
)
def test_filters(viewer_client, query, expected):
    action(vm_id=1)
    action(vm_id=2, outcome="failed", time=T0 - timedelta(minutes=1))
    action(vm_id=3, vm_owner="bob", action="poweroff", rule_name="other",
           time=T0 - timedelta(minutes=2))  # fmt: skip
    action(vm_id=4, vm_owner="dave", dry_run=True, outcome="would", time=T0 - timedelta(minutes=3))
    assert vm_ids(viewer_client.get(f"/actions/?{query}")) == expected


def test_rule_filter_takes_an_id_or_the_name_at_the_time(viewer_client):
    rule = Rule.objects.create(name="renamed", expression="idle", action="suspend")
    action(vm_id=1, rule=rule, rule_name="before-rename")
    action(vm_id=2, rule_name="before-rename", time=T0 - timedelta(1))  # its rule deleted
    action(vm_id=3, rule_name="else", time=T0 - timedelta(2))
    assert vm_ids(viewer_client.get(f"/actions/?rule={rule.id}")) == [1]
    assert vm_ids(viewer_client.get("/actions/?rule=before-rename")) == [1, 2]


def test_date_range_is_whole_days_in_the_operators_time_zone(viewer_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+1 in March
    berlin = ZoneInfo("Europe/Berlin")
    action(vm_id=1, time=datetime(2026, 3, 9, 23, 30, tzinfo=UTC))  # 10 March 00:30 in Berlin
    action(vm_id=2, time=datetime(2026, 3, 9, 22, 30, tzinfo=UTC))  # 9 March 23:30 in Berlin
    action(vm_id=3, time=datetime(2026, 3, 10, 23, 59, tzinfo=berlin))
    action(vm_id=4, time=datetime(2026, 3, 11, 0, 0, tzinfo=berlin))
    assert vm_ids(viewer_client.get("/actions/?since=2026-03-10&until=2026-03-10")) == [3, 1]
    assert vm_ids(viewer_client.get("/actions/?until=2026-03-09")) == [2]
    assert vm_ids(viewer_client.get("/actions/?since=2026-03-11")) == [4]


def test_invalid_filters_are_shown_and_left_out(viewer_client):
    action(vm_id=1)
    response = viewer_client.get("/actions/?vm=abc&since=2026-03-12&until=2026-03-01")
    page = response.content.decode()
    assert "Enter a whole number" in page and "The end is before the start" in page
    assert vm_ids(response) == []  # `since` alone is valid and still applies


def test_pages_keep_the_filters_in_their_links(viewer_client):
    many(120)
    first = viewer_client.get("/actions/?owner=carol&dry_run=yes")
    assert len(vm_ids(first)) == 50 and vm_ids(first)[0] == 1000
    page = first.content.decode()
    assert "?owner=carol&amp;dry_run=yes&amp;page=2" in page
    assert "/actions.csv?owner=carol&amp;dry_run=yes" in page
    last = viewer_client.get("/actions/?owner=carol&dry_run=yes&page=3")
    assert vm_ids(last)[-1] == 1119 and len(vm_ids(last)) == 20


def test_list_query_count_does_not_grow_with_the_records(viewer_client, django_assert_num_queries):
    many(5)
    Rule.objects.create(name="r1", expression="idle", action="suspend")
    with django_assert_num_queries(LIST_QUERIES):
        viewer_client.get("/actions/?dry_run=yes")
    many(300)
    Rule.objects.create(name="r2", expression="idle", action="suspend")
    with django_assert_num_queries(LIST_QUERIES):
        assert len(vm_ids(viewer_client.get("/actions/?dry_run=yes&page=4"))) == 50


# --- CSV -----------------------------------------------------------------------------------


def test_csv_has_a_header_every_matching_row_and_utc_times(viewer_client, settings):
    settings.TIME_ZONE = "America/New_York"
    action(vm_id=1, time=datetime(2026, 3, 10, 12, 0, 5, 123456, tzinfo=UTC))
    action(vm_id=2, vm_owner="bob")
    many(120)
    response = viewer_client.get("/actions.csv?owner=alice")
    today = timezone.localdate().isoformat()
    disposition = f'attachment; filename="idlevm-actions-{today}.csv"'
    assert response["Content-Disposition"] == disposition
    assert response["Content-Type"].startswith("text/csv")
    rows = csv_rows(response)
    assert len(rows) == 1
    row = rows[0]
    assert row["time"] == "2026-03-10T12:00:05Z" and row["vm_id"] == "1"
    assert (row["vm_name"], row["owner"], row["host"], row["rule"]) == ("vm1", "alice", "node0",
                                                                         "idle-4h")  # fmt: skip
    assert (row["action"], row["outcome"], row["dry_run"]) == ("suspend", "done", "false")
    assert row["evidence"] == '{"idle": true, "idle_for": 18000}'
    assert len(csv_rows(viewer_client.get("/actions.csv"))) == 122


def test_csv_cells_that_would_be_formulas_are_quoted(viewer_client):
    action(vm_name="=HYPERLINK(\"http://evil\")", vm_owner="+1+1", vm_host="-2", message="@SUM(A1)",
           vm_group="\tx", state_after="plain")  # fmt: skip
    row = csv_rows(viewer_client.get("/actions.csv"))[0]
    assert row["vm_name"] == '\'=HYPERLINK("http://evil")'
    cells = (row["owner"], row["host"], row["message"], row["group"])
    assert cells == ("'+1+1", "'-2", "'@SUM(A1)", "'\tx")
    assert row["state_after"] == "plain" and row["vm_id"] == "1"


def test_csv_streams_in_a_constant_number_of_queries(viewer_client, django_assert_num_queries):
    many(2500)  # more than one chunk
    with django_assert_num_queries(PER_REQUEST - 2 + 1):  # no nav, so no permissions: one query
        rows = csv_rows(viewer_client.get("/actions.csv?dry_run=yes"))
    assert len(rows) == 2500 and rows[0]["vm_id"] == "1000" and rows[-1]["vm_id"] == "3499"


def test_csv_refuses_invalid_filters_instead_of_exporting_everything(viewer_client):
    action()
    response = viewer_client.get("/actions.csv?vm=abc")
    assert response.status_code == 400 and b"vm" in response.content


# --- hostile parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["²", "٣", "99999999999999999999999"])
def test_a_rule_that_is_no_id_is_looked_up_by_name_only(viewer_client, rule):
    action(rule_name=rule)
    action(vm_id=2)
    assert vm_ids(viewer_client.get("/actions/", {"rule": rule})) == [1]
    assert [r["vm_id"] for r in csv_rows(viewer_client.get("/actions.csv", {"rule": rule}))] == [
        "1"
    ]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Pacific/Kiritimati"])
@pytest.mark.parametrize(
    "query", ["until=9999-12-31", "since=0001-01-01", "since=0001-01-01&until=9999-12-31",
              "vm=99999999999999999999999"],
)  # fmt: skip
def test_extreme_dates_and_ids_are_invalid_filters_not_a_500(viewer_client, settings, zone, query):
    settings.TIME_ZONE = zone
    action()
    response = viewer_client.get(f"/actions/?{query}")
    assert response.status_code == 200 and 'class="errorlist' in response.content.decode()
    assert vm_ids(response) == [1]  # the invalid filter is left out
    assert viewer_client.get(f"/actions.csv?{query}").status_code == 400


def test_the_widest_valid_dates_still_filter(viewer_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    action()
    assert vm_ids(viewer_client.get("/actions/?since=1970-01-01&until=9000-12-31")) == [1]
    assert len(csv_rows(viewer_client.get("/actions.csv?since=1970-01-01&until=9000-12-31"))) == 1
