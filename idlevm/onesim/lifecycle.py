"""Which one.vm.action is allowed in which state, and the states it walks through.

Follows oned's DispatchManager (src/dm/DispatchManagerActions.cc) and LifeCycleManager for
the actions idlevm cares about. Each plan is a list of (STATE, LCM_STATE) steps: the first
is entered at once, each next one after the configured transition time, as the drivers
would report success.
"""

from __future__ import annotations

from idlevm.one.states import LCM_BY_NAME, LCM_STATES, VM_STATES
from idlevm.onesim.model import (
    ACTIVE,
    DONE,
    HOLD,
    LCM_INIT,
    PENDING,
    POWEROFF,
    RUNNING,
    STOPPED,
    SUSPENDED,
    UNDEPLOYED,
    UNKNOWN,
)

Step = tuple[int, int]

# HISTORY ACTION numbers (vm.xsd comment / VMActions.h).
ACTION_IDS: dict[str, int] = {
    "terminate": 27, "terminate-hard": 28, "undeploy": 5, "undeploy-hard": 6,
    "poweroff": 19, "poweroff-hard": 20, "reboot": 15, "reboot-hard": 16,
    "hold": 7, "release": 8, "stop": 9, "suspend": 10, "resume": 11,
    "resched": 17, "unresched": 18,
}  # fmt: skip

# States that take the VM off its host: reaching one closes the current history record.
OFF_HOST = frozenset({SUSPENDED, POWEROFF, STOPPED, UNDEPLOYED, DONE})


def _a(name: str) -> Step:
    return (ACTIVE, LCM_BY_NAME[name])


def _s(state: int) -> Step:
    return (state, LCM_INIT)


_RUNNING_OR_UNKNOWN = frozenset({RUNNING, UNKNOWN})

# action -> [(STATE, accepted LCM states or None for any, steps)]
_TERMINATE: list[Rule] = [
    (ACTIVE, _RUNNING_OR_UNKNOWN, [_a("SHUTDOWN"), _a("EPILOG"), _s(DONE)]),
    (POWEROFF, None, [_a("EPILOG"), _s(DONE)]),
    (SUSPENDED, None, [_a("EPILOG"), _s(DONE)]),
    (PENDING, None, [_s(DONE)]),
    (HOLD, None, [_s(DONE)]),
    (STOPPED, None, [_s(DONE)]),
    (UNDEPLOYED, None, [_s(DONE)]),
]
_UNDEPLOY: list[Rule] = [
    (ACTIVE, _RUNNING_OR_UNKNOWN, [_a("SHUTDOWN_UNDEPLOY"), _a("EPILOG_UNDEPLOY"),
                                     _s(UNDEPLOYED)]),
    (POWEROFF, None, [_a("EPILOG_UNDEPLOY"), _s(UNDEPLOYED)]),
]  # fmt: skip
_POWEROFF: list[Rule] = [(ACTIVE, _RUNNING_OR_UNKNOWN, [_a("SHUTDOWN_POWEROFF"), _s(POWEROFF)])]
_REBOOT: list[Rule] = [(ACTIVE, frozenset({RUNNING}), [])]

_RESUME_UNDEPLOYED = [_s(PENDING), _a("PROLOG_UNDEPLOY"), _a("BOOT_UNDEPLOY"), _a("RUNNING")]

Rule = tuple[int, frozenset[int] | None, list[Step]]

RULES: dict[str, list[Rule]] = {
    "terminate": _TERMINATE,
    "terminate-hard": _TERMINATE,
    "undeploy": _UNDEPLOY,
    "undeploy-hard": _UNDEPLOY,
    "poweroff": _POWEROFF,
    "poweroff-hard": _POWEROFF,
    "reboot": _REBOOT,
    "reboot-hard": _REBOOT,
    "hold": [(PENDING, None, [_s(HOLD)])],
    "release": [(HOLD, None, [_s(PENDING)])],
    "stop": [
        (ACTIVE, frozenset({RUNNING}), [_a("SAVE_STOP"), _a("EPILOG_STOP"), _s(STOPPED)]),
        (SUSPENDED, None, [_a("EPILOG_STOP"), _s(STOPPED)]),
    ],
    "suspend": [(ACTIVE, frozenset({RUNNING}), [_a("SAVE_SUSPEND"), _s(SUSPENDED)])],
    "resume": [
        (SUSPENDED, None, [_a("BOOT_SUSPENDED"), _a("RUNNING")]),
        (POWEROFF, None, [_a("BOOT_POWEROFF"), _a("RUNNING")]),
        (ACTIVE, frozenset({UNKNOWN}), [_a("BOOT_UNKNOWN"), _a("RUNNING")]),
        # Stopped/undeployed VMs go back to PENDING and the scheduler redeploys them.
        (STOPPED, None, [_s(PENDING), _a("PROLOG_RESUME"), _a("BOOT_STOPPED"), _a("RUNNING")]),
        (
            UNDEPLOYED,
            None,
            [_s(PENDING), _a("PROLOG_UNDEPLOY"), _a("BOOT_UNDEPLOY"), _a("RUNNING")],
        ),
    ],
    "resched": [(ACTIVE, _RUNNING_OR_UNKNOWN, [])],
    "unresched": [(ACTIVE, _RUNNING_OR_UNKNOWN, [])],
}


# Entering these (with the last history record closed) means a (re)deployment.
_DEPLOYING = frozenset(
    LCM_BY_NAME[n]
    for n in ("PROLOG", "PROLOG_RESUME", "PROLOG_UNDEPLOY", "BOOT", "BOOT_SUSPENDED",
              "BOOT_POWEROFF", "BOOT_STOPPED", "BOOT_UNDEPLOY", "BOOT_UNKNOWN", "RUNNING",
              "UNKNOWN")
)  # fmt: skip


def opens_history(state: int, lcm_state: int) -> bool:
    return state == ACTIVE and lcm_state in _DEPLOYING


def state_str(state: int, lcm_state: int) -> str:
    """oned's VirtualMachine::state_str: the LCM name while ACTIVE, else the state name."""
    if state == ACTIVE:
        return LCM_STATES.get(lcm_state, str(lcm_state))
    return VM_STATES.get(state, str(state))


def plan(action: str, state: int, lcm_state: int) -> list[Step] | None:
    """The steps `action` takes from (state, lcm_state); None if not allowed there."""
    for when, lcms, steps in RULES[action]:
        # Rules on ACTIVE name the LCM states they accept; other states accept any.
        if when == state and (lcms is None or lcm_state in lcms):
            return list(steps)
    return None
