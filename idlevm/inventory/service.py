"""The suspension service's cycle and its loop, used by `manage.py suspend_service`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from idlevm.inventory.collect import close_interrupted_runs, collect_once, finish_failed
from idlevm.inventory.conditions import Condition, Kind
from idlevm.inventory.lock import cycle_lock
from idlevm.inventory.models import CollectionRun
from idlevm.one.auth import Credentials, credentials_from_env, read_auth_file
from idlevm.one.client import OneClient
from idlevm.one.errors import OneConfigError, OneError
from idlevm.rules.act import close_interrupted_actions
from idlevm.rules.cycle import run_rules

log = logging.getLogger("idlevm.service")


def make_client() -> OneClient:
    """The OpenNebula client from settings (ONE_XMLRPC, ONE_AUTH and the timeouts)."""
    return OneClient(
        settings.ONE_XMLRPC,
        credentials(),
        connect_timeout=settings.ONE_CONNECT_TIMEOUT,
        timeout=settings.ONE_TIMEOUT,
        page_size=settings.ONE_PAGE_SIZE,
    )


def credentials() -> Credentials:
    """The session: from ONE_AUTH when it is set, else OpenNebula's own lookup order.

    Stricter than OpenNebula, which skips an ONE_AUTH that names no file: a typo must not
    make the service fall back to oneadmin's ~/.one/one_auth.
    """
    if not settings.ONE_AUTH:
        return credentials_from_env({k: v for k, v in os.environ.items() if k != "ONE_AUTH"})
    path = Path(settings.ONE_AUTH)
    if path.is_file():
        return read_auth_file(path)
    if ":" in settings.ONE_AUTH:  # looks like user:password itself: never echo it
        raise OneConfigError("ONE_AUTH must be the path of a file holding user:password")
    raise OneConfigError(f"ONE_AUTH names no readable file: {path}")


def run_cycle(
    dry_run: bool = False, stop: Callable[[], bool] = lambda: False
) -> CollectionRun | None:
    """One cycle: collect, detect errors, evaluate the rules, act. None when another cycle
    holds the lock.

    A client that cannot even be built is a failed run too. Rules run only after a
    successful collection: a failed one leaves nothing fresh to act on. `stop` is polled
    between actions (SIGTERM during --loop): the actions not started are abandoned.
    """
    with cycle_lock() as held:
        if not held:
            log.warning("another cycle is still running: this one is skipped")
            return None
        close_interrupted_runs()
        close_interrupted_actions()
        try:
            client = make_client()
        except (OneError, ValueError) as exc:
            kind = Kind.ONE_AUTH if isinstance(exc, OneConfigError) else Kind.ONE_ERROR
            run = CollectionRun.objects.create(started=timezone.now())
            message = f"cannot set up OpenNebula client: {exc}"
            return finish_failed(run, Condition(kind, "one", message))
        with client:
            run = collect_once(client, finish=False)
            if run.outcome == CollectionRun.Outcome.FAILED:
                return run
            try:
                if not stop():
                    run_rules(client, run, dry_run=dry_run, stop=stop)
            except Exception as exc:  # the rules step failing must not leave the run open
                log.exception("cycle %s failed in the rules step", run.pk)
                message = f"the rules step failed: {type(exc).__name__}: {exc}"
                return finish_failed(run, Condition(Kind.RULES_FAILED, "service", message))
        run.outcome, run.finished = CollectionRun.Outcome.OK, timezone.now()
        run.save(update_fields=["outcome", "finished"])
        return run


def run_loop(
    interval: float,
    cycle: Callable[[Callable[[], bool]], CollectionRun | None] | None = None,
    dry_run: bool = False,
) -> int:
    """Run cycles every `interval` seconds until SIGTERM or SIGINT; returns the cycle count.

    A signal never interrupts a step half-way: collection's transaction finishes (or rolls
    back), the action being sent completes and is recorded, the actions not yet started
    are abandoned, then the loop ends.
    """
    if cycle is None:

        def cycle(should_stop: Callable[[], bool]) -> CollectionRun | None:
            return run_cycle(dry_run=dry_run, stop=should_stop)

    cycles = 0
    with stop_on_signals() as stop:
        while not stop.is_set():
            cycles += 1
            # A daemon outlives database restarts: drop a connection that broke since.
            close_old_connections()
            try:
                run = cycle(stop.is_set)
            except Exception:  # a daemon outlives one bad cycle
                log.exception("cycle %s failed unexpectedly", cycles)
                close_old_connections()
            else:
                if run is not None:
                    log.info("%s: %s hosts, %s VMs, %s errors", run, run.hosts, run.vms, run.errors)
            stop.wait(interval)
    return cycles


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (previous handlers restored).

    Cycles poll it between steps and actions: the one in flight completes and is recorded.
    Used by --loop and by --once (systemctl stop, shutdown).
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current step", signum)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
