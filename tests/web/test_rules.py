"""Rules pages: list, create, edit, delete, reference, history; who may do what."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from idlevm.rules.models import ActionRecord, Rule, RuleChange
from idlevm.rules.rulefile import import_rules

pytestmark = pytest.mark.django_db

BAD = "idle and\n  idle_for > minuts(30)"  # unknown function at line 2, column 14


def form_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "suspend-idle", "description": "", "expression": "idle and idle_for > hours(4)",
        "action": "suspend", "dry_run": "on", "enabled": "on", "all_vms": "on", "vms": "",
        "owners": "", "groups": "", "name_pattern": "", "max_actions_per_cycle": "10",
        "cooldown": "1h", "order": "100",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}  # None: leave a checkbox off


def make_rule(name: str = "r1", **kw: object) -> Rule:
    fields: dict[str, object] = {"expression": "idle", "action": "suspend", "all_vms": True}
    fields.update(kw)
    return Rule.objects.create(name=name, **fields)


def record(rule: Rule, vm_id: int = 1) -> ActionRecord:
    return ActionRecord.objects.create(
        time=timezone.now(), rule=rule, rule_name=rule.name, rule_expression=rule.expression,
        vm_id=vm_id, vm_name=f"vm{vm_id}", vm_owner="alice", action=rule.action, dry_run=True,
        outcome=ActionRecord.Outcome.WOULD,
    )  # fmt: skip


# --- permissions ----------------------------------------------------------------------------


PAGES = ["/rules/", "/rules/new/", "/rules/reference/", "/rules/{id}/", "/rules/{id}/delete/",
         "/rules/{id}/history/"]  # fmt: skip


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_are_sent_to_login(client, path):
    rule = make_rule()
    for method in (client.get, client.post):
        response = method(path.format(id=rule.pk))
        assert response.status_code == 302 and "/login/" in response["Location"]
    assert Rule.objects.get().name == "r1" and not RuleChange.objects.exists()


def test_viewers_read_rules_but_cannot_change_them(viewer_client):
    rule = make_rule()
    listing = viewer_client.get("/rules/").content.decode()
    assert "r1" in listing and "New rule" not in listing and "delete" not in listing
    page = viewer_client.get(f"/rules/{rule.pk}/").content.decode()
    assert "Read-only" in page and "disabled" in page and 'name="save"' not in page
    assert viewer_client.post(f"/rules/{rule.pk}/", form_data(name="x")).status_code == 403
    assert viewer_client.post(f"/rules/{rule.pk}/", form_data(preview="1")).status_code == 403
    assert viewer_client.get("/rules/new/").status_code == 403
    assert viewer_client.post("/rules/new/", form_data()).status_code == 403
    assert viewer_client.get(f"/rules/{rule.pk}/delete/").status_code == 403
    assert viewer_client.post(f"/rules/{rule.pk}/delete/").status_code == 403
    assert viewer_client.get(f"/rules/{rule.pk}/history/").status_code == 200
    assert list(Rule.objects.values_list("name", flat=True)) == ["r1"]
    assert not RuleChange.objects.exists()


def test_missing_rules_are_404(operator_client):
    for path in ("/rules/99/", "/rules/99/delete/", "/rules/99/history/"):
        assert operator_client.get(path).status_code == 404


# --- list -----------------------------------------------------------------------------------


def test_list_shows_mode_scope_limits_and_last_cycle(operator_client):
    last = {"matched": 7, "planned": 2, "exempt": 3, "cooling": 1, "blocked": ""}
    make_rule("live", dry_run=False, owners=["alice", "bob"], all_vms=False,
              cooldown=timedelta(hours=2), last_cycle=last)  # fmt: skip
    make_rule("limited", enabled=False, last_cycle={"matched": 40, "planned": 0,
              "blocked": "matched 40 VMs to act on, more than its limit of 10"})  # fmt: skip
    make_rule("fresh")
    page = operator_client.get("/rules/").content.decode()
    assert "New rule" in page
    assert "owners alice, bob" in page and "cooldown 2 h 0 min" in page
    assert "matched 7, planned 2" in page and "exempt 3" in page and "cooling 1" in page
    assert "blocked: matched 40 VMs" in page and "disabled" in page
    assert "not evaluated yet" in page and "dry run" in page and "live" in page


def test_list_query_count_does_not_grow_with_rules(operator_client, django_assert_num_queries):
    make_rule("a")
    operator_client.get("/rules/")  # warm up the session and permission caches
    with django_assert_num_queries(7) as few:  # session, user, 2 permissions, 3 of the page
        operator_client.get("/rules/")
    for i in range(30):
        make_rule(f"r{i:02}", owners=["x"], all_vms=False, last_cycle={"matched": i})
    Rule.objects.get(name="a").delete()  # a deleted rule in the history section
    with django_assert_num_queries(len(few.captured_queries)):
        assert operator_client.get("/rules/").status_code == 200


def version_of(client, rule) -> str:
    """The version the edit form carries (a stale one is refused: a concurrent edit)."""
    page = client.get(f"/rules/{rule.pk}/").content.decode()
    return re.search(r'name="version" value="([^"]*)"', page).group(1)


def test_hostile_names_are_escaped(operator_client):
    rule = make_rule("<script>x</script>", description="<b>d</b>", expression="name == '<i>'")
    data = form_data(name="<script>y</script>", version=version_of(operator_client, rule))
    assert operator_client.post(f"/rules/{rule.pk}/", data).status_code == 302
    for path in ("/rules/", f"/rules/{rule.pk}/", f"/rules/{rule.pk}/history/"):
        page = operator_client.get(path).content.decode()
        assert "<script>" not in page and "<b>d" not in page and "&lt;script&gt;" in page


# --- create ---------------------------------------------------------------------------------


def test_new_rules_start_in_dry_run(operator_client):
    page = operator_client.get("/rules/new/").content.decode()
    assert re.search(r'<input type="checkbox" name="dry_run"[^>]* checked>', page)
    assert 'href="/rules/reference/" target="_blank"' in page


def test_syntax_error_is_shown_at_its_line_and_column_and_nothing_is_saved(operator_client):
    response = operator_client.post("/rules/new/", form_data(expression=BAD.replace("\n", "\r\n")))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Line 2, column 14:" in page and "minuts cannot be called" in page
    assert 'data-line="2" data-column="14"' in page
    caret = " " * 13 + "^"
    assert f'idle and\n  idle_for &gt; minuts(30)\n<span class="caret">{caret}</span></pre>' in page
    assert not Rule.objects.exists() and not RuleChange.objects.exists()


def test_create_saves_the_rule_and_records_who_created_it(operator_client, operator):
    data = form_data(vms="12, 13 12", owners="alice bob", all_vms=None, cooldown="30min")
    response = operator_client.post("/rules/new/", data)
    rule = Rule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/rules/{rule.pk}/"
    assert (rule.vms, rule.owners, rule.all_vms) == ([12, 13], ["alice", "bob"], False)
    assert rule.cooldown == timedelta(minutes=30) and rule.dry_run
    change = RuleChange.objects.get()
    assert (change.kind, change.user, change.username, change.via) == (
        "created", operator, "operator", "console",
    )  # fmt: skip
    assert change.before is None and change.after["vms"] == [12, 13]
    assert change.after["cooldown"] == 1800 and change.rule == rule


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cooldown", "soon", "is not a duration"),
        ("cooldown", "400d", "must be between 0 and 366 days"),
        ("vms", "12, x", "VM ids are whole numbers: not x"),
        ("vms", "12, ², ٣", "VM ids are whole numbers: not ², ٣"),
        ("vms", "1234567890123456789", "VM ids are whole numbers: not 1234567890123456789"),
        ("cooldown", "999999999w", "must be between 0 and 366 days"),
        ("cooldown", "999999999", "must be between 0 and 366 days"),
        ("cooldown", "²h", "is not a duration"),
        ("action", "terminate", "terminate cannot be undone: set confirm_destructive"),
        ("all_vms", None, "the rule applies to no VM"),
        ("expression", "", "This field is required"),
    ],
)
def test_invalid_fields_are_refused_inline(operator_client, field, value, message):
    response = operator_client.post("/rules/new/", form_data(**{field: value}))
    assert response.status_code == 200
    assert message in html.unescape(response.content.decode())
    assert not Rule.objects.exists()


def test_cooldown_accepts_human_durations_and_seconds(operator_client):
    for name, text, seconds in [("a", "2h", 7200), ("b", "1d", 86400), ("c", "90", 90),
                                ("d", "1h30m", 5400), ("e", "2 hours", 7200)]:  # fmt: skip
        response = operator_client.post("/rules/new/", form_data(name=name, cooldown=text))
        assert response.status_code == 302, text
        assert Rule.objects.get(name=name).cooldown == timedelta(seconds=seconds)


def test_duplicate_names_are_refused(operator_client):
    make_rule("suspend-idle")
    response = operator_client.post("/rules/new/", form_data())
    assert response.status_code == 200 and "already exists" in response.content.decode()


# --- edit, history, delete ------------------------------------------------------------------


def test_edit_records_before_and_after(operator_client, operator):
    rule = make_rule("r1", expression="idle")
    page = operator_client.get(f"/rules/{rule.pk}/").content.decode()
    assert "idle</textarea>" in page and 'value="1h"' in page
    data = form_data(name="r1", expression="idle and idle_for > hours(2)", dry_run=None)
    data["version"] = version_of(operator_client, rule)
    assert operator_client.post(f"/rules/{rule.pk}/", data).status_code == 302
    rule.refresh_from_db()
    assert rule.expression == "idle and idle_for > hours(2)" and not rule.dry_run
    change = RuleChange.objects.get()
    assert change.kind == "changed" and change.username == "operator"
    assert change.before["expression"] == "idle" and change.after["dry_run"] is False
    page = operator_client.get(f"/rules/{rule.pk}/history/").content.decode()
    assert "changed" in page and "by operator" in page
    assert "<th>expression</th>" in page and "idle_for &gt; hours(2)" in page
    assert "<th>dry_run</th>" in page and "<th>order</th>" not in page  # only what changed


def test_saving_without_change_records_nothing(operator_client):
    rule = make_rule("r1", expression="idle", cooldown=timedelta(hours=1))
    data = form_data(name="r1", expression="idle", version=version_of(operator_client, rule))
    assert operator_client.post(f"/rules/{rule.pk}/", data).status_code == 302
    assert not RuleChange.objects.exists()


def test_invalid_edit_changes_nothing(operator_client):
    rule = make_rule("r1", expression="idle")
    response = operator_client.post(f"/rules/{rule.pk}/", form_data(name="r2", expression=BAD))
    assert response.status_code == 200 and "Rule r1" in response.content.decode()
    rule.refresh_from_db()
    assert (rule.name, rule.expression) == ("r1", "idle") and not RuleChange.objects.exists()


def test_delete_asks_then_deletes_keeping_action_records_and_history(operator_client):
    rule = make_rule("doomed")
    record(rule, 1), record(rule, 2)
    page = operator_client.get(f"/rules/{rule.pk}/delete/").content.decode()
    assert "Delete rule doomed?" in page and "2: they stay" in page
    assert Rule.objects.exists()  # GET changes nothing
    response = operator_client.post(f"/rules/{rule.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/rules/"
    assert not Rule.objects.exists()
    kept = ActionRecord.objects.all()
    assert len(kept) == 2 and all(r.rule is None and r.rule_name == "doomed" for r in kept)
    change = RuleChange.objects.get()
    assert (change.kind, change.rule, change.after) == ("deleted", None, None)
    assert change.rule_pk == rule.pk
    assert change.before["name"] == "doomed" and change.username == "operator"
    history = operator_client.get(f"/rules/{rule.pk}/history/")
    assert history.status_code == 200 and "This rule was deleted" in history.content.decode()
    assert "doomed" in operator_client.get("/rules/").content.decode()  # recently deleted


def test_rule_changes_are_append_only():
    change = RuleChange.objects.create(rule_pk=1, rule_name="r", kind="created", via="console")
    with pytest.raises(ValueError):
        change.save()
    with pytest.raises(ValueError):
        change.delete()


def test_history_keeps_the_user_name_after_the_user_is_deleted(operator_client, operator):
    operator_client.post("/rules/new/", form_data())
    operator.delete()
    change = RuleChange.objects.get()
    assert change.user is None and change.username == "operator"


# --- other writers: rules import, admin -----------------------------------------------------


def test_rules_import_records_its_changes():
    make_rule("old")
    import_rules(
        "rules:\n  - {name: new, expression: idle, action: log, applies_to: all}\n", replace=True
    )
    changes = {c.rule_name: c for c in RuleChange.objects.all()}
    assert changes["new"].kind == "created" and changes["new"].via == "import"
    assert changes["old"].kind == "deleted" and changes["old"].username == ""


def test_admin_records_its_changes(client):
    admin = User.objects.create_superuser("root", password="root-pass-1")
    client.force_login(admin)
    rule = make_rule("r1")
    data = form_data(name="r1", vms="[]", owners="[]", groups="[]", cooldown="01:00:00")
    data["last_cycle"] = "{}"
    response = client.post(f"/admin/rules/rule/{rule.pk}/change/", {**data, "order": "5"})
    assert response.status_code == 302
    change = RuleChange.objects.get()
    assert (change.via, change.username, change.before["order"], change.after["order"]) == (
        "admin", "root", 100, 5,
    )  # fmt: skip
    client.post(f"/admin/rules/rule/{rule.pk}/delete/", {"post": "yes"})
    assert RuleChange.objects.filter(kind="deleted", via="admin").exists()


# --- reference ------------------------------------------------------------------------------


def test_reference_renders_the_generated_tables(viewer_client):
    page = viewer_client.get("/rules/reference/").content.decode()
    assert "<h2>Fields (per VM)</h2>" in page and "<th>name</th>" in page
    assert "<td><code>idle_for</code></td>" in page
    assert "date|datetime|duration|number|str" in page  # escaped pipes stay in their cell
    assert "<td><code>terminate</code></td>" in page and "|" not in page.split("<table")[1][:5]


def test_new_rule_form_starts_with_the_models_cooldown(operator_client):
    page = operator_client.get("/rules/new/").content.decode()
    assert 'name="cooldown" value="1h"' in page


@pytest.mark.parametrize(("field", "value"), [("vms", "²"), ("cooldown", "999999999w")])
def test_preview_of_an_invalid_form_shows_the_error(operator_client, field, value):
    response = operator_client.post("/rules/new/", form_data(preview="1", **{field: value}))
    assert response.status_code == 200 and 'class="errorlist' in response.content.decode()
    assert not Rule.objects.exists()


@pytest.mark.parametrize("path", ["/rules/", "/rules/reference/", "/rules/{id}/history/"])
def test_read_only_pages_refuse_post(viewer_client, operator_client, path):
    url = path.format(id=make_rule().pk)
    assert viewer_client.post(url).status_code == 405
    assert operator_client.post(url).status_code == 405
