"""Shared fixtures: a real simulator over HTTP, and the settings it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def onesim() -> Iterator[Any]:
    """A simulator on a free port: 2 hosts, 30 VMs (every state kind, most running)."""
    from idlevm.onesim.testing import running_simulator

    with running_simulator(hosts=2, vms=30, seed=1) as sim:
        yield sim


@pytest.fixture
def one_settings(settings: Any, onesim: Any, tmp_path: Any) -> Any:
    """Point the service's settings at the simulator, with a real ONE_AUTH file."""
    auth = tmp_path / "one_auth"
    auth.write_text(onesim.session + "\n")
    settings.ONE_XMLRPC = onesim.url
    settings.ONE_AUTH = str(auth)
    settings.ONE_CONNECT_TIMEOUT = 2.0
    settings.ONE_TIMEOUT = 5.0
    return settings
