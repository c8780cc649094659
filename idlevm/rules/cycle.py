"""The rules half of a service cycle: evaluate the enabled rules, then act on the result.

Called by idlevm.inventory.service after a successful collection, under the cycle lock.
Timings and counts go on the cycle's CollectionRun, what each rule found on the rule
(`last_cycle`), error conditions into ErrorMessage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from idlevm.inventory import conditions
from idlevm.inventory.models import CollectionRun, VirtualMachine
from idlevm.rules.act import Acted, ActionTarget, act
from idlevm.rules.engine import Evaluation, Limits, evaluate_rules
from idlevm.rules.fields import Context
from idlevm.rules.functions import local_zone
from idlevm.rules.models import Rule

log = logging.getLogger("idlevm.rules")


def limits(dry_run: bool = False) -> Limits:
    """The global rails from settings; `dry_run` (the --dry-run flag) adds to RULES_DRY_RUN."""
    return Limits(
        max_actions=settings.MAX_ACTIONS_PER_CYCLE,
        max_percent=settings.MAX_ACTIONS_PERCENT,
        dry_run=dry_run or settings.RULES_DRY_RUN,
    )


def context() -> Context:
    now = timezone.now().astimezone(local_zone())
    return Context(now=now, stale_after=timedelta(seconds=settings.IDLE_STALE_SECONDS))


def live_vms() -> list[VirtualMachine]:
    # monitoring is not a rule field and may be large: leave it in the database.
    return list(VirtualMachine.objects.filter(gone_at__isnull=True).defer("monitoring"))


def evaluate(ctx: Context, rails: Limits) -> Evaluation:
    """The evaluate step: rules against the stored VMs, with every rail (engine.py)."""
    evaluation = evaluate_rules(Rule.objects.filter(enabled=True), live_vms(), ctx, rails)
    for result in evaluation.results:
        Rule.objects.filter(pk=result.rule.pk).update(last_cycle=result.summary())
    return evaluation


def run_rules(
    target: ActionTarget,
    run: CollectionRun,
    dry_run: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> CollectionRun:
    """Evaluate and act for a collected run; records timings and counts on the run."""
    ctx, rails = context(), limits(dry_run)
    evaluation = evaluate(ctx, rails)
    started = time.monotonic()
    acted = Acted() if stop() else act(target, evaluation.planned, ctx, run, stop)
    found = evaluation.conditions + acted.conditions
    conditions.record(found, timezone.now())
    run.evaluate_seconds = evaluation.seconds
    run.act_seconds = time.monotonic() - started
    run.actions = acted.counts
    run.errors += len(found)
    run.save(update_fields=["evaluate_seconds", "act_seconds", "actions", "errors"])
    log.info(
        "rules: %s planned, outcomes %s, %s error condition(s)",
        len(evaluation.planned), acted.counts or "{}", len(found),
    )  # fmt: skip
    return run
