"""A 50k-VM pool is served in reasonable time."""

from __future__ import annotations

import time
import urllib.request
import xmlrpc.client

import pytest
from lxml import etree

from idlevm.onesim.testing import Simulator, build_cloud


@pytest.mark.slow
def test_fifty_thousand_vms() -> None:
    cloud = build_cloud(hosts=100, vms=50_000, seed=2)
    with Simulator(cloud) as sim:
        body = xmlrpc.client.dumps((sim.session, -2, -1, -1, -1), "one.vmpool.infoextended")
        request = urllib.request.Request(sim.url, body.encode(), {"Content-Type": "text/xml"})
        start = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as reply:
            raw = reply.read()
        elapsed = time.monotonic() - start
        # lxml, not xmlrpc.client: the point is the server, not Python's slow parser.
        inner = etree.fromstring(raw, etree.XMLParser(huge_tree=True)).findtext(
            "params/param/value/array/data/value[2]/string"
        )
        pool = etree.fromstring(inner.encode(), etree.XMLParser(huge_tree=True))
        assert len(pool) == sum(1 for v in cloud.vms.values() if v.state != 6)
        assert elapsed < 12, f"serving took {elapsed:.1f}s"
