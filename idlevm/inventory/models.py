"""What the suspension service knows about the cloud: hosts, VMs, idle history, runs, errors.

Hosts and VMs use OpenNebula's own id as primary key: OpenNebula never reuses ids, and it
lets the collection step upsert by id without first mapping ids to rows.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models


class Host(models.Model):
    id = models.IntegerField(primary_key=True, help_text="OpenNebula host id")
    name = models.CharField(max_length=255)
    state = models.IntegerField()
    state_name = models.CharField(max_length=32)
    cluster_id = models.IntegerField(default=-1)
    cluster = models.CharField(max_length=255, blank=True)
    total_cpu = models.IntegerField(default=0, help_text="100 per CPU")
    cpu_usage = models.IntegerField(default=0)
    max_cpu = models.IntegerField(default=0)
    total_mem = models.BigIntegerField(default=0, help_text="KiB")
    mem_usage = models.BigIntegerField(default=0)
    max_mem = models.BigIntegerField(default=0)
    running_vms = models.IntegerField(default=0)
    template = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_seen_run = models.BigIntegerField(default=0)
    gone_at = models.DateTimeField(null=True, blank=True, help_text="no longer in OpenNebula")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.id})"


class VirtualMachine(models.Model):
    id = models.IntegerField(primary_key=True, help_text="OpenNebula VM id")
    name = models.CharField(max_length=255)
    uid = models.IntegerField()
    owner = models.CharField(max_length=255)
    gid = models.IntegerField()
    group = models.CharField(max_length=255)
    state = models.IntegerField()
    state_name = models.CharField(max_length=32)
    lcm_state = models.IntegerField()
    lcm_state_name = models.CharField(max_length=48)
    # No foreign key: a VM's host may be unknown to us (a host removed from OpenNebula),
    # and the name is a snapshot for history either way.
    host_id = models.IntegerField(null=True, blank=True, db_index=True)
    host_name = models.CharField(max_length=255, blank=True)
    stime = models.DateTimeField(null=True, blank=True, help_text="started")
    cpu = models.FloatField(default=0)
    vcpu = models.IntegerField(default=1)
    memory = models.IntegerField(default=0, help_text="MiB")
    user_template = models.JSONField(default=dict, blank=True)
    monitoring = models.JSONField(default=dict, blank=True)

    # The latest idle record (docs/protocol.md); all null when there is none.
    idle = models.BooleanField(null=True, blank=True)
    idle_since = models.DateTimeField(null=True, blank=True, help_text="host clock")
    idle_seq = models.BigIntegerField(null=True, blank=True)
    idle_time = models.BigIntegerField(null=True, blank=True, help_text="agent clock, epoch")
    idle_received = models.DateTimeField(null=True, blank=True, help_text="host clock")
    # db_default too: the collection step may insert a row without its idle columns.
    idle_source = models.CharField(max_length=8, blank=True, default="", db_default="")
    cpu_pct = models.FloatField(null=True, blank=True)
    steal_pct = models.FloatField(null=True, blank=True)
    load = models.FloatField(null=True, blank=True)
    disk_bps = models.FloatField(null=True, blank=True)
    net_rx_bps = models.FloatField(null=True, blank=True)
    net_tx_bps = models.FloatField(null=True, blank=True)
    sessions = models.IntegerField(null=True, blank=True)
    input_age = models.BigIntegerField(null=True, blank=True)
    busy_procs = models.IntegerField(null=True, blank=True)
    gpu_pct = models.FloatField(null=True, blank=True)
    idle_rejected = models.BigIntegerField(default=0, db_default=0)

    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_seen_run = models.BigIntegerField(default=0)
    gone_at = models.DateTimeField(null=True, blank=True, help_text="no longer in OpenNebula")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["state", "lcm_state"]), models.Index(fields=["owner"])]

    def __str__(self) -> str:
        return f"{self.name} (#{self.id})"


class IdleSample(models.Model):
    """One row per new agent record seen for a VM (history for charts and explanations)."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="samples")
    seq = models.BigIntegerField()
    agent_time = models.BigIntegerField(help_text="agent clock, epoch")
    received = models.DateTimeField(db_index=True)
    idle = models.BooleanField()
    idle_for = models.BigIntegerField(null=True, blank=True, help_text="seconds")
    cpu_pct = models.FloatField(null=True, blank=True)
    steal_pct = models.FloatField(null=True, blank=True)
    load = models.FloatField(null=True, blank=True)
    disk_bps = models.FloatField(null=True, blank=True)
    net_rx_bps = models.FloatField(null=True, blank=True)
    net_tx_bps = models.FloatField(null=True, blank=True)
    sessions = models.IntegerField(null=True, blank=True)
    busy_procs = models.IntegerField(null=True, blank=True)
    gpu_pct = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["vm_id", "received"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "agent_time", "seq"], name="idlesample_once")
        ]


class CollectionRun(models.Model):
    class Outcome(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        FAILED = "failed"

    started = models.DateTimeField(db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.RUNNING)
    hosts = models.IntegerField(default=0)
    vms = models.IntegerField(default=0)
    new_samples = models.IntegerField(default=0)
    gone = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    fetch_seconds = models.FloatField(null=True, blank=True)
    # The cycle's steps: collect (fetch + store + error detection), evaluate rules, act.
    collect_seconds = models.FloatField(null=True, blank=True)
    detect_seconds = models.FloatField(null=True, blank=True)
    evaluate_seconds = models.FloatField(null=True, blank=True)
    act_seconds = models.FloatField(null=True, blank=True)
    actions = models.JSONField(default=dict, blank=True, help_text="action outcome -> count")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return f"run {self.pk} {self.outcome} at {self.started:%Y-%m-%d %H:%M:%S}"

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished is None else self.finished - self.started


class ErrorMessage(models.Model):
    """An error condition, deduplicated by (kind, subject).

    Seen again: `modified` moves and `count` grows; a cleared error seen again is open again
    (with an ErrorEvent saying so). `modified` is only ever moved by the service: an
    operator's edit, clear or reopen leaves it, so it always tells when the error last
    happened.
    """

    class Kind(models.TextChoices):
        ONE_UNREACHABLE = "one_unreachable", "OpenNebula unreachable"
        ONE_SLOW = "one_slow", "OpenNebula slow"
        ONE_AUTH = "one_auth", "OpenNebula refused the session"
        ONE_ERROR = "one_error", "OpenNebula error"
        COLLECTION_FAILED = "collection_failed", "Collection failed"
        HOST_STATE = "host_state", "Host in ERROR or OFFLINE"
        VM_FAILURE = "vm_failure", "VM in UNKNOWN or a failure state"
        IDLE_MISSING = "idle_missing", "Running VM without idle data"
        IDLE_STALE = "idle_stale", "Idle data too old"
        IDLE_WRONG_HOST = "idle_wrong_host", "Idle data for a VM not on that host"
        IDLE_MALFORMED = "idle_malformed", "Malformed idle data"
        RULE_INVALID = "rule_invalid", "Rule invalid (skipped)"
        RULE_FAILED = "rule_failed", "Rule failed on some VMs"
        RULE_LIMIT = "rule_limit", "Rule matched more VMs than its limit"
        ACTIONS_LIMIT = "actions_limit", "Global action limit reached"
        ACTION_FAILED = "action_failed", "Action failed"
        RULES_FAILED = "rules_failed", "The rules step failed"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.CharField(
        max_length=64, help_text='"one", "service", "host:<id>", "vm:<id>" or "rule:<id>"'
    )
    message = models.TextField()
    note = models.TextField(blank=True, help_text="operator's note")
    first_seen = models.DateTimeField()
    modified = models.DateTimeField(db_index=True)
    count = models.IntegerField(default=1)
    cleared = models.BooleanField(default=False)
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-modified"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "subject"], name="errormessage_once")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} [{self.subject}]"


class ErrorEvent(models.Model):
    """What happened to an error after it was first seen: append-only history.

    Written by the console (edited, cleared, reopened: with the operator) and by the service
    (seen again after it was cleared). Texts are snapshots: `message_after`/`note_after` are
    the error's text and note right after the event, `*_before` right before it (empty for
    "seen again": the service overwrites the text in the same statement that finds it).
    """

    class Kind(models.TextChoices):
        RECURRED = "recurred", "seen again after it was cleared"
        CLEARED = "cleared", "cleared"
        REOPENED = "reopened", "reopened"
        EDITED = "edited", "edited"

    error = models.ForeignKey(ErrorMessage, on_delete=models.CASCADE, related_name="events")
    time = models.DateTimeField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # The user may be deleted later; the name stays. Both empty: the service did it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150, blank=True)
    message_before = models.TextField(blank=True)
    message_after = models.TextField(blank=True)
    note_before = models.TextField(blank=True)
    note_after = models.TextField(blank=True)

    class Meta:
        ordering = ["time", "id"]
        indexes = [models.Index(fields=["error", "time"])]

    def __str__(self) -> str:
        who = f" by {self.username}" if self.username else ""
        return f"{self.get_kind_display()}{who} at {self.time:%Y-%m-%d %H:%M:%S}"
