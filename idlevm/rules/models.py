"""Rules (what to do to which VMs, when), ActionRecord (the history of what was done) and
RuleChange (the history of the rules themselves)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from idlevm.rules.actions import ACTIONS


class Rule(models.Model):
    """An expression over VM fields, an action, and the VMs it applies to.

    Scope: every VM when `all_vms`, else the VMs in any of `vms` (OpenNebula ids), `owners`,
    `groups`, or whose name matches `name_pattern` (shell-style). An empty scope applies to
    no VM.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    expression = models.TextField()
    action = models.CharField(max_length=32, choices=[(a, a) for a in ACTIONS])
    enabled = models.BooleanField(default=True)
    # New rules start in dry run: an operator turns them live after seeing what they'd do.
    dry_run = models.BooleanField(default=True)
    confirm_destructive = models.BooleanField(
        default=False, help_text="required for actions that cannot be undone (terminate)"
    )
    all_vms = models.BooleanField(default=False)
    vms = models.JSONField(default=list, blank=True, help_text="OpenNebula VM ids")
    owners = models.JSONField(default=list, blank=True)
    groups = models.JSONField(default=list, blank=True)
    name_pattern = models.CharField(max_length=255, blank=True, help_text='e.g. "test-*"')
    max_actions_per_cycle = models.PositiveIntegerField(
        default=10, help_text="matching more VMs than this: no action at all, and an error"
    )
    cooldown = models.DurationField(
        default=timedelta(hours=1), help_text="no second action on the same VM before this"
    )
    order = models.IntegerField(default=100, help_text="lower first; one action per VM a cycle")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)
    # What the last cycle found: {"matched": n, "acted": n, "exempt": n, ...} (for the console).
    last_cycle = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from idlevm.rules.validation import rule_problems

        problems = rule_problems(self)
        if problems:
            raise ValidationError(problems)


class ActionRecord(models.Model):
    """One action (or dry-run or skipped action) on one VM: append-only history.

    Names are snapshots, so the record still reads right after the rule is edited or
    deleted and the VM is gone. A record is written `pending` before the action is sent
    and completed once (pending -> its outcome); nothing else ever changes it.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending"  # written before sending: a crash leaves this, never a duplicate
        DONE = "done"
        FAILED = "failed"
        SKIPPED = "skipped"
        WOULD = "would", "would act (dry run)"
        INTERRUPTED = "interrupted", "interrupted (outcome unknown)"

    time = models.DateTimeField(db_index=True)
    run = models.ForeignKey(
        "inventory.CollectionRun", null=True, blank=True, on_delete=models.SET_NULL
    )
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL)
    rule_name = models.CharField(max_length=100)
    rule_expression = models.TextField()
    vm_id = models.IntegerField(db_index=True)
    vm_name = models.CharField(max_length=255)
    vm_owner = models.CharField(max_length=255)
    vm_group = models.CharField(max_length=255, blank=True)
    vm_host = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=32)
    dry_run = models.BooleanField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    message = models.TextField(blank=True, help_text="why skipped, or OpenNebula's error")
    state_before = models.CharField(max_length=64, blank=True)
    state_after = models.CharField(max_length=64, blank=True)
    # The field values the expression read for this VM: why the rule matched.
    evidence = models.JSONField(default=dict, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["rule", "vm_id", "time"])]

    def __str__(self) -> str:
        mode = " (dry run)" if self.dry_run else ""
        return f"{self.action} VM {self.vm_id} by {self.rule_name}: {self.outcome}{mode}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("force_insert"):
            stored = ActionRecord.objects.filter(pk=self.pk).values_list("outcome", flat=True)
            if list(stored) != [self.Outcome.PENDING]:
                raise ValueError("action records are append-only: only a pending one completes")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("action records are append-only")


class RuleChange(models.Model):
    """One change to a rule (created, changed, deleted): append-only, like ActionRecord.

    Who and which rule are snapshots as well as foreign keys, so the history still reads
    right after the user or the rule is deleted. `rule_pk` keeps the rule's id after its
    deletion (the FK is then null): a deleted rule's history stays at its address.
    `before`/`after` hold the editable fields (idlevm.rules.history.snapshot).
    """

    class Kind(models.TextChoices):
        CREATED = "created"
        CHANGED = "changed"
        DELETED = "deleted"

    time = models.DateTimeField(default=timezone.now, db_index=True)
    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    rule_pk = models.BigIntegerField(db_index=True, help_text="the rule's id, kept after deletion")
    rule_name = models.CharField(max_length=100)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=16, help_text="console, admin or import")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.rule_name} {self.kind} by {self.username or '?'} via {self.via}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("rule changes are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("rule changes are append-only")
