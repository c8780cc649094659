"""Errors: the list (tabs, filters, links, pages), an error's page with its history, and the
operators' edit, clear and reopen (POST only, CSRF-protected, recorded with who did it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from idlevm.inventory.collect import collect_once
from idlevm.inventory.conditions import Condition, record
from idlevm.inventory.models import ErrorEvent, ErrorMessage
from tests.inventory.factories import StaticSource, host, vm

pytestmark = pytest.mark.django_db

# Session, user and the user's permissions (2: the view's edit check and the nav share them).
PER_REQUEST = 4
LIST_QUERIES = PER_REQUEST + 3  # counts per tab, the paginator's count, the page
DETAIL_QUERIES = PER_REQUEST + 2  # the error, its events


def make_errors(n: int, prefix: str = "vm", cleared: bool = False) -> list[ErrorMessage]:
    record([Condition("idle_stale", f"{prefix}:{i}", f"stale {i}") for i in range(n)],
           timezone.now())  # fmt: skip
    errors = ErrorMessage.objects.filter(subject__startswith=f"{prefix}:")
    if cleared:
        errors.update(cleared=True, cleared_at=timezone.now())
    return list(errors)


def one_error(**kw: Any) -> ErrorMessage:
    base: dict[str, Any] = dict(kind="vm_failure", subject="vm:7", message="VM 7 is UNKNOWN",
                                first_seen=timezone.now(), modified=timezone.now())  # fmt: skip
    base.update(kw)
    return ErrorMessage.objects.create(**base)


def text(response: Any) -> str:
    return str(response.content.decode())


# --- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/errors/", "/errors/{id}/"])
def test_anonymous_users_are_sent_to_login(client, url):
    error = one_error()
    response = client.get(url.format(id=error.id))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("action", ["clear", "reopen"])
def test_anonymous_posts_go_to_login_and_change_nothing(client, action):
    error = one_error(cleared=action == "reopen")
    response = client.post(f"/errors/{error.id}/{action}/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert ErrorMessage.objects.get().cleared == (action == "reopen")
    assert not ErrorEvent.objects.exists()


def test_viewers_read_but_see_no_buttons_and_may_not_post(viewer_client):
    error = one_error()
    page = text(viewer_client.get(f"/errors/{error.id}/"))
    assert "VM 7 is UNKNOWN" in page
    assert "/clear/" not in page and "<textarea" not in page
    assert "/clear/" not in text(viewer_client.get("/errors/"))
    assert viewer_client.post(f"/errors/{error.id}/clear/").status_code == 403
    assert viewer_client.post(f"/errors/{error.id}/reopen/").status_code == 403
    edit = viewer_client.post(f"/errors/{error.id}/", {"message": "mine", "note": "x"})
    assert edit.status_code == 403
    assert ErrorMessage.objects.get().message == "VM 7 is UNKNOWN"
    assert not ErrorEvent.objects.exists()


def test_operators_see_the_edit_form_and_buttons(operator_client):
    error = one_error()
    page = text(operator_client.get(f"/errors/{error.id}/"))
    assert f'action="/errors/{error.id}/clear/"' in page and "<textarea" in page
    assert f'action="/errors/{error.id}/clear/"' in text(operator_client.get("/errors/"))


@pytest.mark.parametrize("action", ["clear", "reopen"])
def test_get_never_changes_anything(operator_client, action):
    error = one_error(cleared=action == "reopen")
    assert operator_client.get(f"/errors/{error.id}/{action}/").status_code == 405
    assert ErrorMessage.objects.get().cleared == (action == "reopen")
    assert not ErrorEvent.objects.exists()


def test_forms_need_the_csrf_token(operator):
    error = one_error()
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(f"/errors/{error.id}/clear/").status_code == 403
    assert ErrorMessage.objects.get().cleared is False
    page = client.get(f"/errors/{error.id}/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/errors/{error.id}/clear/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert ErrorMessage.objects.get().cleared is True


def test_unknown_error_is_404(viewer_client, operator_client):
    assert viewer_client.get("/errors/999/").status_code == 404
    assert operator_client.post("/errors/999/clear/").status_code == 404


# --- the list ------------------------------------------------------------------------------


def test_list_shows_open_errors_with_their_columns_and_subject_links(viewer_client, inventory):
    page = text(viewer_client.get("/errors/"))
    # The fixture's VM 3 has stale data, VM 4 none.
    assert "Idle data too old" in page and "Running VM without idle data" in page
    assert 'href="/vms/3/">vm:3</a>' in page and 'href="/vms/4/">vm:4</a>' in page
    error = ErrorMessage.objects.get(subject="vm:3")
    assert f'href="/errors/{error.id}/"' in page
    assert "<time " in page and '<td class="num">1</td>' in page


@pytest.mark.parametrize(
    ("subject", "link"),
    [("host:3", "/hosts/3/"), ("rule:5", "/rules/5/"), ("vm:12", "/vms/12/"), ("one", None),
     ("vm:x", None)],
)  # fmt: skip
def test_subjects_link_to_their_page(viewer_client, subject, link):
    one_error(subject=subject)
    page = text(viewer_client.get("/errors/"))
    if link:
        assert f'href="{link}">{subject}</a>' in page
    else:
        assert f'<td class="mono">{subject}</td>' in page


def test_tabs_show_open_cleared_or_all_with_counts(viewer_client):
    make_errors(2, "vm")
    make_errors(3, "host", cleared=True)
    open_page = viewer_client.get("/errors/")
    assert {e.error.subject for e in open_page.context["rows"]} == {"vm:0", "vm:1"}
    assert open_page.context["tabs"] == [("open", 2), ("cleared", 3), ("all", 5)]
    cleared = viewer_client.get("/errors/?status=cleared").context["rows"]
    assert {e.error.subject for e in cleared} == {"host:0", "host:1", "host:2"}
    assert len(viewer_client.get("/errors/?status=all").context["rows"]) == 5


def test_filter_by_kind_and_subject(viewer_client):
    make_errors(21, "vm")
    one_error(kind="vm_failure", subject="vm:1", message="failed")
    by_kind = viewer_client.get("/errors/?kind=vm_failure").context["rows"]
    assert [r.error.message for r in by_kind] == ["failed"]
    by_subject = viewer_client.get("/errors/?q=vm:2").context["rows"]
    assert [r.error.subject for r in by_subject] == ["vm:2"]  # not vm:20
    part = viewer_client.get("/errors/?q=m:2&kind=idle_stale").context["rows"]
    assert sorted(r.error.subject for r in part) == ["vm:2", "vm:20"]
    both = viewer_client.get("/errors/?q=vm:1&kind=idle_stale").context["rows"]
    assert [(r.error.kind, r.error.subject) for r in both] == [("idle_stale", "vm:1")]


def test_an_unknown_kind_is_reported_and_ignored(viewer_client):
    make_errors(2)
    response = viewer_client.get("/errors/?kind=nonsense")
    assert response.status_code == 200 and len(response.context["rows"]) == 2
    assert "Select a valid choice" in text(response)


@pytest.mark.parametrize("q", ["vm:\u00b2", "vm:\u0663", "vm:\uff11", "vm:" + "9" * 19])
def test_a_subject_with_non_ascii_or_too_many_digits_is_a_text_search(viewer_client, q):
    make_errors(3)
    response = viewer_client.get("/errors/", {"q": q})
    assert response.status_code == 200 and response.context["rows"] == []


def test_list_is_paginated_newest_first_with_filters_kept(viewer_client):
    make_errors(60)
    ErrorMessage.objects.filter(subject="vm:59").update(modified=timezone.now() + timedelta(1))
    first = viewer_client.get("/errors/?kind=idle_stale")
    assert len(first.context["rows"]) == 50 and first.context["rows"][0].error.subject == "vm:59"
    assert "?kind=idle_stale&amp;page=2" in text(first)
    second = viewer_client.get("/errors/?kind=idle_stale&page=2")
    assert len(second.context["rows"]) == 10


def test_texts_from_vms_are_escaped(viewer_client):
    error = one_error(message="<script>alert(1)</script>", note="<b>n</b>")
    for url in ("/errors/", f"/errors/{error.id}/"):
        page = text(viewer_client.get(url))
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
        assert "<b>n</b>" not in page


@pytest.mark.parametrize("client_name", ["viewer_client", "operator_client"])
def test_list_query_count_does_not_grow_with_the_errors(
    request, client_name, django_assert_num_queries
):
    web = request.getfixturevalue(client_name)
    make_errors(3)
    with django_assert_num_queries(LIST_QUERIES):
        web.get("/errors/")
    make_errors(80, "host")
    make_errors(80, "rule", cleared=True)
    with django_assert_num_queries(LIST_QUERIES):
        assert len(web.get("/errors/?status=all&page=2").context["rows"]) == 50


def test_detail_query_count_does_not_grow_with_the_history(
    operator_client, django_assert_num_queries
):
    error = one_error()
    with django_assert_num_queries(DETAIL_QUERIES):
        operator_client.get(f"/errors/{error.id}/")
    for _ in range(10):
        operator_client.post(f"/errors/{error.id}/clear/")
        operator_client.post(f"/errors/{error.id}/reopen/")
    with django_assert_num_queries(DETAIL_QUERIES):
        page = operator_client.get(f"/errors/{error.id}/")
    assert len(page.context["events"]) == 20


# --- edit, clear, reopen -------------------------------------------------------------------


def test_operator_clears_and_reopens_with_history(operator_client, operator):
    error = one_error()
    response = operator_client.post(f"/errors/{error.id}/clear/")
    assert response.status_code == 302 and response["Location"] == f"/errors/{error.id}/"
    stored = ErrorMessage.objects.get()
    assert stored.cleared and stored.cleared_at is not None
    assert stored.modified == error.modified and stored.count == 1  # the service's fields
    operator_client.post(f"/errors/{error.id}/reopen/")
    stored = ErrorMessage.objects.get()
    assert not stored.cleared and stored.cleared_at is None
    events = list(ErrorEvent.objects.values_list("kind", "username", "user"))
    assert events == [("cleared", "operator", operator.id), ("reopened", "operator", operator.id)]


def test_clearing_twice_records_once(operator_client):
    error = one_error()
    operator_client.post(f"/errors/{error.id}/clear/")
    response = operator_client.post(f"/errors/{error.id}/clear/", follow=True)
    assert "already cleared" in text(response)
    assert ErrorEvent.objects.count() == 1


def test_clear_from_the_list_returns_to_the_list_but_never_elsewhere(operator_client):
    error = one_error()
    back = operator_client.post(f"/errors/{error.id}/clear/", {"next": "/errors/?kind=vm_failure"})
    assert back["Location"] == "/errors/?kind=vm_failure"
    away = operator_client.post(f"/errors/{error.id}/reopen/", {"next": "https://evil.example/"})
    assert away["Location"] == f"/errors/{error.id}/"


def test_operator_edits_text_and_note_with_before_and_after(operator_client):
    error = one_error(note="")
    response = operator_client.post(
        f"/errors/{error.id}/", {"message": "VM 7 lost its host", "note": "ticket 42"}
    )
    assert response.status_code == 302
    stored = ErrorMessage.objects.get()
    assert (stored.message, stored.note) == ("VM 7 lost its host", "ticket 42")
    assert stored.modified == error.modified and stored.count == error.count
    event = ErrorEvent.objects.get()
    assert (event.kind, event.username) == ("edited", "operator")
    assert (event.message_before, event.message_after) == ("VM 7 is UNKNOWN", "VM 7 lost its host")
    assert (event.note_before, event.note_after) == ("", "ticket 42")
    page = text(operator_client.get(f"/errors/{error.id}/"))
    assert "<del>VM 7 is UNKNOWN</del>" in page and "<ins>ticket 42</ins>" in page


def test_an_unchanged_edit_records_nothing(operator_client):
    error = one_error(message="line 1\nline 2", note="n")
    # Browsers send a textarea's line ends as CRLF.
    operator_client.post(f"/errors/{error.id}/", {"message": "line 1\r\nline 2", "note": "n"})
    assert not ErrorEvent.objects.exists()


def test_an_invalid_edit_is_shown_again_and_changes_nothing(operator_client):
    error = one_error()
    response = operator_client.post(f"/errors/{error.id}/", {"message": "", "note": "x"})
    assert response.status_code == 400 and "This field is required" in text(response)
    assert ErrorMessage.objects.get().note == ""
    assert not ErrorEvent.objects.exists()


def test_a_cleared_error_that_happens_again_is_open_with_its_history(operator_client):
    source = StaticSource([host(0, vm_ids=(1,))], [vm(1, idle=None)])  # running, no data
    collect_once(source)
    error = ErrorMessage.objects.get(subject="vm:1")
    operator_client.post(f"/errors/{error.id}/", {"message": error.message, "note": "agent fixed"})
    operator_client.post(f"/errors/{error.id}/clear/")
    assert ErrorMessage.objects.get().cleared
    collect_once(source)  # the same condition again
    error.refresh_from_db()
    assert not error.cleared and error.count == 2 and error.note == "agent fixed"
    kinds = list(error.events.values_list("kind", "username"))
    assert kinds == [("edited", "operator"), ("cleared", "operator"), ("recurred", "")]
    page = text(operator_client.get(f"/errors/{error.id}/"))
    assert page.index("cleared</td>") < page.index("seen again after it was cleared")
    assert 'class="badge bad">open' in page
    assert error.id in [r.error.id for r in operator_client.get("/errors/").context["rows"]]
    collect_once(source)  # seen again while open: no new event
    assert error.events.count() == 3


def test_recurrences_are_recorded_in_bulk_with_constant_queries():
    counts = []
    for n in (3, 300):
        ErrorMessage.objects.all().delete()
        conditions = [Condition("idle_stale", f"vm:{i}", "stale") for i in range(n)]
        record(conditions, timezone.now())
        ErrorMessage.objects.update(cleared=True)
        with CaptureQueriesContext(connection) as ctx:
            record(conditions, timezone.now())
        counts.append(len(ctx.captured_queries))
        assert ErrorEvent.objects.filter(kind="recurred").count() == n
        assert not ErrorMessage.objects.filter(cleared=True).exists()
        ErrorEvent.objects.all().delete()
    assert counts[0] == counts[1], counts


def test_a_deleted_user_stays_named_in_the_history(operator_client, operator):
    error = one_error()
    operator_client.post(f"/errors/{error.id}/clear/")
    User.objects.filter(pk=operator.pk).delete()
    event = ErrorEvent.objects.get()
    assert event.user is None and event.username == "operator"
