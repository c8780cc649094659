"""The simulator's monitoring: run the real host probe and merge what it prints.

With `--fifo-dir DIR`, each simulated host gets its own FIFO directory `DIR/<host name>/`
(its /tmp/vm_serial). Every interval the runner plays two parts of OpenNebula:
- the KVM driver: the VMs running on a host get their FIFOs (`idlevm.host.fifo`, the code
  `idlevm.host.vmm prepare` runs), FIFOs of VMs that left the host are removed (cleanup);
- monitord: it runs the real probe (`python -m idlevm.host.probe`, a subprocess, as oned
  runs probes) on each host directory in both formats, parses the output with the template
  parser the service shares (idlevm.one.template), and merges it like oned does: `IDLE`
  into the host's TEMPLATE, each `VM = [ ID, MONITOR ]` into that VM's MONITORING (merged
  into what it had, so a VM without an entry keeps its last values; an empty value removes
  one; entries for VMs not on that host are ignored).
So agent -> FIFO -> probe -> XML-RPC -> service runs for real in tests and in the demo.
"""

from __future__ import annotations

import base64
import binascii
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from idlevm.host.fifo import (
    HostSetupError,
    fifo_vm_id,
    parse_vm_id,
    prepare_fifos,
    remove_fifos,
)
from idlevm.one.template import TemplateSyntaxError, parse_template
from idlevm.onesim.cloud import Cloud

PROBE_TIMEOUT = 30.0
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class ProbeRound:
    """What one round did, for logs and tests."""

    hosts: int = 0
    vm_records: int = 0
    problems: list[str] = field(default_factory=list)


class ProbeRunner:
    def __init__(self, cloud: Cloud, fifo_dir: str | Path, interval: float = 30.0) -> None:
        self.cloud = cloud
        self.fifo_dir = Path(fifo_dir)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def host_dir(self, host_name: str) -> Path:
        """The FIFO directory of a host; a name that is not a plain file name is refused."""
        if not _SAFE_NAME.fullmatch(host_name):
            raise HostSetupError(f"host name {host_name[:64]!r} cannot name a directory")
        return self.fifo_dir / host_name

    def run_once(self) -> ProbeRound:
        result = ProbeRound()
        # The hosts' directories go in here, as /tmp/vm_serial goes in /tmp.
        self.fifo_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        placements = self.cloud.placements()
        for host_id, host_name in self.cloud.host_names().items():
            on_host = {vm for vm, hid in placements.items() if hid == host_id}
            try:
                directory = self.host_dir(host_name)
                self._reconcile(directory, on_host, result)
                result.vm_records += self._merge_vms(directory, on_host, result)
                self._merge_host(directory, host_id, result)
            except (HostSetupError, OSError, subprocess.SubprocessError) as exc:
                result.problems.append(f"host {host_name}: {exc}")
            result.hosts += 1
        for problem in result.problems:
            print(f"onesim probe: {problem}", file=sys.stderr)
        return result

    def _reconcile(self, directory: Path, on_host: set[int], result: ProbeRound) -> None:
        for vm_id in sorted(on_host):
            try:
                prepare_fifos(str(directory), vm_id)
            except HostSetupError as exc:
                result.problems.append(f"VM {vm_id}: {exc}")
        if directory.is_dir():
            for path in directory.iterdir():
                stale = fifo_vm_id(path.name)
                if stale is not None and stale not in on_host:
                    remove_fifos(str(directory), stale)

    def _probe(self, directory: Path, fmt: str) -> str:
        command = [sys.executable, "-m", "idlevm.host.probe", "--dir", str(directory)]
        proc = subprocess.run(
            [*command, "--format", fmt], capture_output=True, text=True, timeout=PROBE_TIMEOUT
        )
        if proc.stderr:
            print(proc.stderr, end="", file=sys.stderr)
        return proc.stdout

    def _merge_vms(self, directory: Path, on_host: set[int], result: ProbeRound) -> int:
        seen: dict[int, dict[str, str]] = {}
        try:
            entries = parse_template(self._probe(directory, "vm"))
        except TemplateSyntaxError as exc:
            result.problems.append(f"vm probe output: {exc}")
            return 0
        for name, value in entries:
            if name != "VM" or not isinstance(value, dict):
                continue
            vm_id = _entry_vm_id(value)
            if vm_id is None or vm_id not in on_host:
                result.problems.append(f"VM entry for a VM not on this host: {value.get('ID')!r}")
                continue
            try:
                monitor = base64.b64decode(value.get("MONITOR", ""), validate=True).decode()
                attrs = parse_template(monitor)
            except (binascii.Error, UnicodeDecodeError, TemplateSyntaxError) as exc:
                result.problems.append(f"VM {vm_id}: bad MONITOR ({exc})")
                continue
            seen[vm_id] = {k: v for k, v in attrs if isinstance(v, str)}
        for vm_id, values in seen.items():
            self.cloud.set_vm_monitoring(vm_id, values)
        return len(seen)

    def _merge_host(self, directory: Path, host_id: int, result: ProbeRound) -> None:
        try:
            attrs = parse_template(self._probe(directory, "host"))
        except TemplateSyntaxError as exc:
            result.problems.append(f"host probe output: {exc}")
            return
        values = {k: v for k, v in attrs if k == "IDLE" and isinstance(v, str)}
        if values:
            self.cloud.set_host_template(host_id, values)

    def start(self) -> ProbeRunner:
        self._thread = threading.Thread(target=self._run, name="probe-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PROBE_TIMEOUT + 5)

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception as exc:  # a simulator bug must not end monitoring for good
                print(f"onesim probe: round failed: {exc!r}", file=sys.stderr)
            if self._stop.wait(self.interval):
                return


def _entry_vm_id(entry: dict[str, str]) -> int | None:
    try:
        return parse_vm_id(entry.get("ID", ""))
    except ValueError:
        return None
