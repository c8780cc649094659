"""`manage.py rule_check` and `manage.py rules export/import` (rules as code)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from idlevm.inventory.collect import collect_once
from idlevm.one.client import OneClient
from idlevm.rules.models import Rule
from idlevm.rules.rulefile import format_duration, parse_duration
from tests.rules.conftest import add_vm, idle_monitoring, make_rule

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]

RULES = """\
rules:
  - name: suspend-idle-4h
    description: Suspend VMs idle for more than 4 hours
    expression: idle and idle_for > hours(4)
    action: suspend
    enabled: true
    dry_run: false
    applies_to: all
    max_actions_per_cycle: 10
    cooldown: 1h
  - name: nightly-test-vms
    expression: |-
      now.hour >= 20
      and not (cpu_pct > 5)
    action: poweroff
    applies_to: {vms: [12, 13], owners: [alice], groups: [physics], name_pattern: "test-*"}
    cooldown: 1h30m
    order: 5
"""


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- rule_check ----------------------------------------------------------------------------


def test_rule_check_says_valid_for_a_valid_expression():
    assert run("rule_check", "--expression", "idle and idle_for > hours(4)")[0] == "valid\n"


def test_rule_check_exits_1_with_the_error_and_its_position_on_stderr():
    proc = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "rule_check", "--expression", "idle_for > 4"],
        capture_output=True, text=True, env={"DEBUG": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "line 1, column 1: cannot order a duration" in proc.stderr


def test_rule_check_evaluates_for_a_vm_as_the_service_would(sim_settings, sim):
    idle = add_vm(sim, "idle", idle_monitoring(hours=5))
    silent = add_vm(sim, "silent")
    collect_once(OneClient(sim.url, sim.session))
    out, _ = run("rule_check", "-e", "idle and idle_for > hours(4)", "--vm", str(idle))
    assert out.splitlines()[:2] == ["valid", f"VM {idle} (idle): True (matches)"]
    assert "  idle = True" in out
    out, _ = run("rule_check", "-e", "not (idle_for < hours(4))", "--vm", str(silent))
    assert f"VM {silent} (silent): None (does not match)" in out
    with pytest.raises(CommandError, match="no VM 999"):
        run("rule_check", "-e", "idle", "--vm", "999")


# --- rules export / import ---------------------------------------------------------------


def test_import_creates_rules_with_every_field(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    out, _ = run("rules", "import", str(path))
    assert "2 were created" in out
    night = Rule.objects.get(name="nightly-test-vms")
    assert (night.action, night.order, night.dry_run) == ("poweroff", 5, True)  # default: dry
    assert (night.vms, night.owners, night.groups) == ([12, 13], ["alice"], ["physics"])
    assert night.name_pattern == "test-*" and not night.all_vms
    assert night.cooldown == timedelta(hours=1, minutes=30)
    assert night.expression == "now.hour >= 20\nand not (cpu_pct > 5)"
    idle = Rule.objects.get(name="suspend-idle-4h")
    assert idle.all_vms and not idle.dry_run and idle.max_actions_per_cycle == 10


def test_export_then_import_round_trips_exactly(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    run("rules", "import", str(path))
    make_rule(name="terminate-old", action="terminate", confirm_destructive=True,
              expression="uptime > days(90)", cooldown=timedelta(days=2, seconds=5))  # fmt: skip
    exported, _ = run("rules", "export")
    before = {r.name: r for r in Rule.objects.all()}
    Rule.objects.all().delete()
    again = tmp_path / "again.yaml"
    again.write_text(exported)
    run("rules", "import", str(again))
    assert run("rules", "export")[0] == exported
    fields = [f.name for f in Rule._meta.fields if f.name not in ("id", "created", "modified")]
    for rule in Rule.objects.all():
        old = before[rule.name]
        assert [getattr(rule, f) for f in fields] == [getattr(old, f) for f in fields]


def test_export_writes_a_file_and_reimporting_it_changes_nothing(tmp_path):
    make_rule()
    path = tmp_path / "out.yaml"
    run("rules", "export", str(path))
    assert "name: suspend-idle" in path.read_text()
    out, _ = run("rules", "import", str(path))
    assert out == "1 were unchanged: suspend-idle\n"


def test_an_invalid_rule_anywhere_means_nothing_is_imported(tmp_path):
    make_rule(name="suspend-idle-4h", expression="idle")
    bad = (
        RULES
        + """\
  - name: broken
    expression: idle_for > 4
    action: suspend
    applies_to: all
  - name: no-action
    expression: idle
    action: reboot
    applies_to: {owners: [bob], colour: blue}
"""
    )
    path = tmp_path / "rules.yaml"
    path.write_text(bad)
    with pytest.raises(CommandError) as error:
        run("rules", "import", str(path))
    text = str(error.value)
    assert "nothing imported" in text
    assert "rule 3 (broken): expression: line 1, column 1: cannot order a duration" in text
    assert "rule 4 (no-action): unknown applies_to keys: colour" in text
    assert list(Rule.objects.values_list("name", "expression")) == [("suspend-idle-4h", "idle")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("rules: [", "not valid YAML"),
        ("- a\n- b\n", "a mapping with a list under 'rules'"),
        ("rules: []\nextra: 1\n", "unknown top-level keys: extra"),
        ("rules:\n  - name: x\n", "missing keys: expression, action, applies_to"),
        ("rules:\n  - {name: x, expression: idle, action: suspend, applies_to: all, "
         "cooldown: soon}\n", "'soon' is not a duration"),
        ("rules:\n  - {name: x, expression: idle, action: terminate, applies_to: all}\n",
         "confirm_destructive"),
        ("rules:\n  - {name: x, expression: idle, action: log, applies_to: {}}\n",
         "applies to no VM"),
        ("rules:\n  - {name: x, expression: idle, action: log, applies_to: all}\n"
         "  - {name: x, expression: idle, action: log, applies_to: all}\n", "comes earlier"),
        ("rules:\n  - {name: x, expression: idle, action: log, applies_to: all, "
         "dry_run: 'yes'}\n", "dry_run must be true or false"),
        ("rules: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("rules:\n  - {name: x, expression: idle, action: log, applies_to: all, "
         "cooldown: 1:30}\n", "not a duration"),
        ("rules:\n  - {name: x, expression: idle, action: log, applies_to: all, "
         "cooldown: 500d}\n", "cooldown: must be between 0 and 366 days"),
        ("rules:\n  - name: x\n    expression: idle\n    expression: 'True'\n"
         "    action: log\n    applies_to: all\n", "key given twice: expression"),
    ],
)  # fmt: skip
def test_broken_rule_files_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(CommandError) as error:
        run("rules", "import", str(path))
    assert message in str(error.value)
    assert not Rule.objects.exists()


def test_replace_deletes_rules_the_file_does_not_name_and_check_changes_nothing(tmp_path):
    make_rule(name="old-rule")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    out, _ = run("rules", "import", str(path), "--replace", "--check")
    assert "2 would be created" in out and "1 would be deleted: old-rule" in out
    assert list(Rule.objects.values_list("name", flat=True)) == ["old-rule"]
    run("rules", "import", str(path), "--replace")
    assert sorted(Rule.objects.values_list("name", flat=True)) == [
        "nightly-test-vms", "suspend-idle-4h",
    ]  # fmt: skip


def test_import_updates_rules_by_name(tmp_path):
    rule = make_rule(name="suspend-idle-4h", expression="idle", action="log")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    out, _ = run("rules", "import", str(path))
    assert "1 were updated: suspend-idle-4h" in out
    rule.refresh_from_db()
    assert (rule.action, rule.expression) == ("suspend", "idle and idle_for > hours(4)")


@pytest.mark.parametrize("text, seconds", [("1h", 3600), ("1h30m", 5400), ("2d", 172800),
                                           ("45s", 45), ("0s", 0)])  # fmt: skip
def test_durations_read_and_write_compactly(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("value", [90, "90", "1:30", "soon", "-1h", "9999999999d", True])
def test_durations_without_a_unit_or_out_of_range_are_refused(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_the_reference_in_the_docs_is_the_generated_one():
    from idlevm.rules.reference import END, START, reference_markdown

    text = (REPO / "docs" / "rules.md").read_text()
    block = text.split(START + "\n", 1)[1].split(END, 1)[0]
    assert block == reference_markdown(), "run: manage.py rules reference, paste into docs"
    assert run("rules", "reference")[0] == reference_markdown()
