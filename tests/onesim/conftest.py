"""Shared fixtures for the simulator tests."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator

import pytest

from idlevm.onesim.testing import Simulator, running_simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """5 hosts, 40 VMs covering every generated state kind, instantaneous transitions."""
    with running_simulator(hosts=5, vms=40, seed=3) as s:
        yield s


@pytest.fixture
def rpc(sim: Simulator) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(sim.url)
