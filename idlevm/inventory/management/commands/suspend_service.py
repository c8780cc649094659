"""`manage.py suspend_service [--once | --loop [--interval S]]`: the suspension service.

Cron runs it with --once (the default) every few minutes; --loop runs it as a daemon that
stops cleanly on SIGTERM. The exit status is non-zero when the (last) cycle failed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from idlevm.inventory.models import CollectionRun
from idlevm.inventory.service import run_cycle, run_loop, stop_on_signals


class Command(BaseCommand):
    help = (
        "One service cycle (or a loop of them): collect hosts and VMs from OpenNebula, record "
        "error conditions, evaluate the rules and send their actions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="run one cycle and exit (cron)")
        mode.add_argument("--loop", action="store_true", help="run cycles until SIGTERM")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="evaluate the rules and record what they would do, send nothing",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between cycles with --loop (default SUSPEND_SERVICE_INTERVAL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if interval is not None and not options["loop"]:
            raise CommandError("--interval only makes sense with --loop")
        if options["loop"]:
            seconds = settings.SUSPEND_SERVICE_INTERVAL if interval is None else interval
            if seconds <= 0:
                raise CommandError("--interval must be positive")
            cycles = run_loop(seconds, dry_run=options["dry_run"])
            self.stdout.write(f"stopped after {cycles} cycle(s)")
            return
        with stop_on_signals() as stop:
            run = run_cycle(dry_run=options["dry_run"], stop=stop.is_set)
        if run is None:
            # EX_TEMPFAIL: not an error of this run, but cron should tell someone that
            # cycles overlap (OpenNebula slow, interval too short).
            raise CommandError("another cycle is still running: skipped", returncode=75)
        actions = ", ".join(f"{n} {outcome}" for outcome, n in sorted(run.actions.items()))
        summary = (
            f"{run}: {run.hosts} hosts, {run.vms} VMs, {run.new_samples} new samples, "
            f"{run.gone} gone, {run.errors} error condition(s), actions: {actions or 'none'}"
        )
        if run.outcome != CollectionRun.Outcome.OK:
            raise CommandError(f"{summary}: {run.message}", returncode=1)
        self.stdout.write(summary)
