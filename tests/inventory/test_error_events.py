"""Error history: "seen again" events from the service (their time, exactly which errors
reopen) and the admin, which must not change an error's history-bearing fields."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from idlevm.inventory import conditions
from idlevm.inventory.conditions import Condition, record
from idlevm.inventory.models import ErrorEvent, ErrorMessage

pytestmark = pytest.mark.django_db


def stale(i: int) -> Condition:
    return Condition("idle_stale", f"vm:{i}", f"stale {i}")


def clear(error: ErrorMessage, at: object) -> None:
    """What the console's clear writes: the state and a "cleared" event at the same time."""
    ErrorMessage.objects.filter(pk=error.pk).update(cleared=True, cleared_at=at)
    ErrorEvent.objects.create(error=error, time=at, kind="cleared", username="operator")


def test_an_error_cleared_during_the_fetch_recurs_after_its_clear():
    record([stale(1)], timezone.now())
    error = ErrorMessage.objects.get()
    cycle_start = timezone.now()  # the cycle's `now`, taken before the fetch
    clear(error, cycle_start + timedelta(microseconds=1))  # the operator clears meanwhile
    record([stale(1)], cycle_start)
    events = list(error.events.all())  # ordered by (time, id)
    assert [e.kind for e in events] == ["cleared", "recurred"]
    assert events[1].time >= events[0].time > cycle_start
    error.refresh_from_db()
    assert not error.cleared and error.cleared_at is None


def test_a_recurrence_is_never_stamped_before_the_clear_even_with_a_clock_ahead():
    record([stale(1)], timezone.now())
    error = ErrorMessage.objects.get()
    ahead = timezone.now() + timedelta(seconds=30)  # the web server's clock runs ahead
    clear(error, ahead)
    record([stale(1)], timezone.now())
    recurred = error.events.get(kind="recurred")
    assert recurred.time == ahead
    assert [e.kind for e in error.events.all()] == ["cleared", "recurred"]


def test_an_error_without_cleared_at_recurs_at_the_clock():
    record([stale(1)], timezone.now())
    ErrorMessage.objects.update(cleared=True)
    before = timezone.now()
    record([stale(1)], before - timedelta(minutes=5))
    assert ErrorEvent.objects.get(kind="recurred").time >= before


def test_a_repeated_now_reopens_only_the_errors_this_call_saw():
    now = timezone.now()
    record([stale(1)], now)
    a = ErrorMessage.objects.get()
    clear(a, timezone.now())
    record([stale(2)], now)  # collect_once(now=...) may repeat a `now`
    a.refresh_from_db()
    assert a.cleared and a.cleared_at is not None
    assert list(ErrorEvent.objects.values_list("kind", flat=True)) == ["cleared"]
    record([stale(1)], now)  # seen again, same `now`: it does recur
    a.refresh_from_db()
    assert not a.cleared
    assert list(a.events.values_list("kind", flat=True)) == ["cleared", "recurred"]


def test_only_the_cleared_errors_seen_reopen_and_others_keep_their_state():
    now = timezone.now()
    record([stale(i) for i in range(4)], now)
    ErrorMessage.objects.filter(subject__in=["vm:0", "vm:1"]).update(cleared=True)
    record([stale(0), stale(2), Condition("vm_failure", "vm:1", "unknown")], now)
    cleared = set(ErrorMessage.objects.filter(cleared=True).values_list("kind", "subject"))
    assert cleared == {("idle_stale", "vm:1")}  # vm_failure vm:1 is another error
    recurred = ErrorEvent.objects.get(kind="recurred")
    assert recurred.error.subject == "vm:0"
    assert (recurred.message_after, recurred.note_after) == ("stale 0", "")


def test_many_keys_are_looked_up_in_bounded_chunks(monkeypatch):
    monkeypatch.setattr(conditions, "KEYS_PER_QUERY", 50)
    keys = [stale(i) for i in range(120)]
    record(keys, timezone.now())
    ErrorMessage.objects.filter(subject__in=[f"vm:{i}" for i in range(0, 120, 2)]).update(
        cleared=True
    )
    with CaptureQueriesContext(connection) as ctx:
        record(keys, timezone.now())
    selects = [q for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3  # 120 keys, 50 a query
    assert ErrorEvent.objects.filter(kind="recurred").count() == 60
    assert not ErrorMessage.objects.filter(cleared=True).exists()


# --- admin ---------------------------------------------------------------------------------


def test_admin_shows_the_console_fields_read_only_and_ignores_posted_changes(admin_client):
    record([stale(1)], timezone.now())
    error = ErrorMessage.objects.get()
    url = f"/admin/inventory/errormessage/{error.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    assert {"message", "note", "cleared", "cleared_at"}.isdisjoint(form.fields)
    admin_client.post(
        url,
        {"kind": error.kind, "subject": error.subject, "message": "edited", "note": "n",
         "cleared": "on", "cleared_at_0": "2020-01-01", "cleared_at_1": "00:00:00"},
    )  # fmt: skip
    error.refresh_from_db()
    assert (error.message, error.note, error.cleared, error.cleared_at) == (
        "stale 1", "", False, None,
    )  # fmt: skip


def test_admin_cannot_delete_an_error_and_its_history(admin_client):
    record([stale(1)], timezone.now())
    error = ErrorMessage.objects.get()
    clear(error, timezone.now())
    url = f"/admin/inventory/errormessage/{error.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client.post(
        "/admin/inventory/errormessage/",
        {"action": "delete_selected", "_selected_action": [error.pk], "post": "yes"},
    )
    assert changelist.status_code in (200, 302)
    assert ErrorMessage.objects.filter(pk=error.pk).exists()
    assert ErrorEvent.objects.filter(error=error).exists()
