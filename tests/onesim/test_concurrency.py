"""Many clients at once: no errors, consistent answers."""

from __future__ import annotations

import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor

from lxml import etree

from idlevm.onesim.testing import running_simulator


def test_parallel_pool_reads_and_actions() -> None:
    with running_simulator(hosts=4, vms=400, seed=7) as sim:
        running = [i for i in sim.cloud.vm_ids() if sim.cloud.vm_state(i) == ("ACTIVE", "RUNNING")]
        total = len(sim.cloud.vm_ids())

        def reader(_: int) -> list[int]:
            rpc = xmlrpc.client.ServerProxy(sim.url)
            counts = []
            for _ in range(5):
                ok, body, _ = rpc.one.vmpool.infoextended(sim.session, -2, -1, -1, -2)
                assert ok
                counts.append(len(etree.fromstring(body.encode())))
            return counts

        def actor(k: int) -> list[object]:
            rpc = xmlrpc.client.ServerProxy(sim.url)
            return [rpc.one.vm.action(sim.session, "poweroff", vm)[0] for vm in running[k::4]]

        with ThreadPoolExecutor(8) as pool:
            reads = [pool.submit(reader, i) for i in range(4)]
            acts = [pool.submit(actor, k) for k in range(4)]
            results = [f.result() for f in reads]
            outcomes = [r for f in acts for r in f.result()]
        assert all(c == total for counts in results for c in counts)
        assert outcomes == [True] * len(running)
        assert all(sim.cloud.vm_state(i)[0] == "POWEROFF" for i in running)
