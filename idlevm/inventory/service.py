"""The suspension service's cycle and its loop, used by `manage.py suspend_service`."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from django.conf import settings
from django.utils import timezone

from idlevm.inventory.collect import collect_once, finish_failed
from idlevm.inventory.conditions import Condition, Kind
from idlevm.inventory.models import CollectionRun
from idlevm.one.auth import credentials_from_env
from idlevm.one.client import OneClient
from idlevm.one.errors import OneConfigError, OneError

log = logging.getLogger("idlevm.service")


def make_client() -> OneClient:
    """The OpenNebula client from settings (ONE_XMLRPC, ONE_AUTH and the timeouts)."""
    environ = {**os.environ, "ONE_AUTH": settings.ONE_AUTH} if settings.ONE_AUTH else None
    credentials = credentials_from_env(environ)
    return OneClient(
        settings.ONE_XMLRPC,
        credentials,
        connect_timeout=settings.ONE_CONNECT_TIMEOUT,
        timeout=settings.ONE_TIMEOUT,
        page_size=settings.ONE_PAGE_SIZE,
    )


def run_cycle() -> CollectionRun:
    """One cycle of the service. A client that cannot even be built is a failed run too."""
    try:
        client = make_client()
    except (OneError, ValueError) as exc:
        kind = Kind.ONE_AUTH if isinstance(exc, OneConfigError) else Kind.ONE_ERROR
        run = CollectionRun.objects.create(started=timezone.now())
        return finish_failed(run, Condition(kind, "one", f"cannot set up OpenNebula client: {exc}"))
    return collect_once(client)


def run_loop(interval: float, cycle: Callable[[], CollectionRun] = run_cycle) -> int:
    """Run cycles every `interval` seconds until SIGTERM or SIGINT; returns the cycle count.

    A signal never interrupts a cycle half-way: the cycle's transaction finishes (or rolls
    back), then the loop ends.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current cycle", signum)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    cycles = 0
    try:
        while not stop.is_set():
            cycles += 1
            try:
                run = cycle()
            except Exception:  # a daemon outlives one bad cycle
                log.exception("cycle %s failed unexpectedly", cycles)
            else:
                log.info("%s: %s hosts, %s VMs, %s errors", run, run.hosts, run.vms, run.errors)
            stop.wait(interval)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return cycles
