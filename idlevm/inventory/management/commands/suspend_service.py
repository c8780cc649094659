"""`manage.py suspend_service [--once | --loop [--interval S]]`: the suspension service.

Cron runs it with --once (the default) every few minutes; --loop runs it as a daemon that
stops cleanly on SIGTERM. The exit status is non-zero when the (last) cycle failed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from idlevm.inventory.models import CollectionRun
from idlevm.inventory.service import run_cycle, run_loop


class Command(BaseCommand):
    help = "Collect hosts and VMs from OpenNebula into the database (one cycle, or a loop)."

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="run one cycle and exit (cron)")
        mode.add_argument("--loop", action="store_true", help="run cycles until SIGTERM")
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
            cycles = run_loop(seconds)
            self.stdout.write(f"stopped after {cycles} cycle(s)")
            return
        run = run_cycle()
        if run is None:
            self.stdout.write("another cycle is still running: skipped")
            return
        summary = (
            f"{run}: {run.hosts} hosts, {run.vms} VMs, {run.new_samples} new samples, "
            f"{run.gone} gone, {run.errors} error condition(s)"
        )
        if run.outcome != CollectionRun.Outcome.OK:
            raise CommandError(f"{summary}: {run.message}", returncode=1)
        self.stdout.write(summary)
