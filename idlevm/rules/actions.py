"""The actions a rule may take: a registry, each with the VM states it applies to.

States are the ones where OpenNebula accepts the action (oned's DispatchManager) narrowed
to what makes sense for reclaiming an idle VM: acting on a VM that is booting, migrating or
failing is never right, so a VM must be settled (RUNNING, or a resting state) first.
"""

from __future__ import annotations

from dataclasses import dataclass

from idlevm.one.client import VM_ACTIONS

State = tuple[str, str | None]  # (STATE name, LCM_STATE name or None for any)
RUNNING: State = ("ACTIVE", "RUNNING")


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    one_action: str | None  # the one.vm.action name; None: record only
    states: frozenset[State]
    doc: str
    destructive: bool = True  # counts towards the global limit
    needs_confirmation: bool = False  # the rule must set confirm_destructive

    def applies(self, state: str, lcm_state: str) -> bool:
        if not self.states:  # applies everywhere (log)
            return True
        return (state, lcm_state) in self.states or (state, None) in self.states

    def describe_states(self) -> str:
        if not self.states:
            return "any"
        return ", ".join(sorted(s if lcm is None else f"{s}/{lcm}" for s, lcm in self.states))


def _states(*names: str) -> frozenset[State]:
    return frozenset(RUNNING if n == "RUNNING" else (n, None) for n in names)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        Action("suspend", "suspend", _states("RUNNING"),
               "Save the VM's memory to disk and free its CPU and memory; `resume` restores it "
               "as it was. Disks stay on the host."),
        Action("poweroff", "poweroff", _states("RUNNING"),
               "ACPI shutdown; the VM keeps its host and disks; `resume` boots it again."),
        Action("poweroff-hard", "poweroff-hard", _states("RUNNING"),
               "Power the VM off at once (no guest shutdown); `resume` boots it again."),
        Action("undeploy", "undeploy", _states("RUNNING", "POWEROFF"),
               "Shut the VM down and move its disks back to the datastore, freeing the host "
               "entirely; `resume` redeploys it (possibly elsewhere)."),
        Action("stop", "stop", _states("RUNNING", "SUSPENDED"),
               "Save the VM's memory and move it off the host; `resume` redeploys it."),
        Action("hold", "hold", _states("PENDING"),
               "Keep a PENDING VM from being deployed; `release` lets it go."),
        Action("terminate", "terminate", _states("RUNNING", "POWEROFF", "SUSPENDED", "STOPPED",
                                                 "UNDEPLOYED", "PENDING", "HOLD"),
               "Delete the VM and its non-persistent disks: cannot be undone. The rule must "
               "confirm it (confirm_destructive).", needs_confirmation=True),
        Action("log", None, frozenset(), "Record that the rule matched; send nothing.",
               destructive=False),
    ]
}  # fmt: skip


def validate_registry() -> None:
    """Every action must be one OpenNebula knows (checked at import: a typo fails loudly)."""
    for action in ACTIONS.values():
        if action.one_action is not None and action.one_action not in VM_ACTIONS:
            raise ValueError(f"action {action.name}: {action.one_action!r} is no one.vm.action")


validate_registry()
