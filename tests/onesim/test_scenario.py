"""Generated and file scenarios."""

from __future__ import annotations

import pytest

from idlevm.onesim import scenario
from idlevm.onesim.scenario import ScenarioError
from idlevm.onesim.testing import build_cloud


def test_generation_is_deterministic() -> None:
    a = build_cloud(hosts=3, vms=50, seed=9, clock=lambda: 1_700_000_000.0)
    b = build_cloud(hosts=3, vms=50, seed=9, clock=lambda: 1_700_000_000.0)
    c = build_cloud(hosts=3, vms=50, seed=10, clock=lambda: 1_700_000_000.0)
    assert a.vm_pool_xml(-2, -1, -1, -2, True) == b.vm_pool_xml(-2, -1, -1, -2, True)
    assert a.vm_pool_xml(-2, -1, -1, -2, True) != c.vm_pool_xml(-2, -1, -1, -2, True)


def test_mix_of_states_and_owners() -> None:
    hosts, vms = scenario.generate(10, 1000, 1, 1_700_000_000)
    states = [(v.state, v.lcm_state) for v in vms]
    assert states.count((3, 3)) > 600
    assert {v.uname for v in vms} >= {"oneadmin", "alice", "bob"}
    assert [h.state for h in hosts].count(2) == 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected an object"),
        ({"hosts": []}, "at least one host"),
        ({"hosts": [{"cores": "many"}]}, "hosts[0].cores: expected an integer"),
        ({"hosts": [{}], "vms": [{"host": 7}]}, "vms[0].host: no host with id 7"),
        ({"hosts": [{}], "vms": [{"colour": "red"}]}, "vms[0]: unknown keys ['colour']"),
        ({"hosts": [{}], "vms": [{"id": 1}, {"id": 1}]}, "vms: duplicate ids"),
        ({"hosts": [{}], "vms": [{"monitoring": {"X": [1]}}]}, "vms[0].monitoring.X"),
    ],
)
def test_invalid_files_are_explained(data: object, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario.from_dict(data, 0)
    assert message in str(err.value)
