"""The idle feeder publishes records the client accepts, for running VMs only."""

from __future__ import annotations

from idlevm.one.client import OneClient
from idlevm.onesim.feeder import IdleFeeder
from idlevm.onesim.testing import running_simulator


def test_feeder_publishes_valid_records_for_running_vms_except_dead_agents():
    with running_simulator(hosts=2, vms=60, seed=3) as sim:
        feeder = IdleFeeder(sim.cloud)
        published = feeder.publish_once(now=1_764_000_000)
        vms = OneClient(sim.url, sim.session).vms()
        running = [v for v in vms if (v.state_name, v.lcm_state_name) == ("ACTIVE", "RUNNING")]
        with_data = [v for v in vms if v.idle is not None]
        assert published == len(with_data) == len([v for v in running if v.id % 17])
        assert all(not v.idle_problems for v in vms)
        assert {v.idle.idle for v in with_data if v.idle} == {True, False}
        feeder.publish_once(now=1_764_000_060)
        again = {v.id: v.idle for v in OneClient(sim.url, sim.session).vms() if v.idle}
        assert all(rec.seq == 1 and rec.received == 1_764_000_060 for rec in again.values())
