"""The monitoring probe: drain every VM's FIFO, print its idle data for OpenNebula.

    python3 -m idlevm.host.probe [--dir /tmp/vm_serial] [--state-dir DIR] --format host|vm

`--format host` prints the classic host attribute `IDLE="1;42:seq=...;43:..."` (OpenNebula
3.x `im/kvm.d`, or `im/kvm-probes.d/host/system`); `--format vm` prints one
`VM = [ ID="42", DEPLOY_ID="one-42", MONITOR="<base64>" ]` per VM (`vm/monitor`). Both are
the published format of docs/protocol.md. Every value printed was parsed from a valid agent
line and formatted again from numbers and two fixed words, so nothing a VM writes (quotes,
backslashes, newlines, brackets, non-ASCII) can reach OpenNebula's template parser.

The probe never fails the host's monitoring: problems go to stderr and it exits 0.
"""

import argparse
import base64
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

from idlevm import protocol
from idlevm.host.cache import StateDir, VmState
from idlevm.host.drain import DrainError, fifo_vm_ids, newest_valid, read_fifo, split_lines
from idlevm.host.fifo import DEFAULT_DIR, HostSetupError, open_safe_dir

# The client's bounds on the host attribute (idlevm/one/idle.py): past them it would reject
# records, so the probe never prints more.
MAX_RECORDS = 1000
MAX_ATTRIBUTE_BYTES = 256 * 1024
MAX_COUNT = 2**53

# Published key (docs/protocol.md) -> its MONITORING name, in the order writers use.
PUBLISHED = (
    ("v", "IDLE_VERSION"), ("seq", "IDLE_SEQ"), ("ts", "IDLE_TIME"), ("rcv", "IDLE_RECEIVED"),
    ("state", "IDLE_STATE"), ("since", "IDLE_SINCE"), ("cpu", "IDLE_CPU"),
    ("steal", "IDLE_STEAL"), ("load", "IDLE_LOAD"), ("disk", "IDLE_DISK"),
    ("rx", "IDLE_NET_RX"), ("tx", "IDLE_NET_TX"), ("sess", "IDLE_SESSIONS"),
    ("input", "IDLE_INPUT_AGE"), ("procs", "IDLE_BUSY_PROCS"), ("gpu", "IDLE_GPU"),
    ("rej", "IDLE_REJECTED"),
)  # fmt: skip


def warn(message: str) -> None:
    print("idlevm probe: " + message, file=sys.stderr)


# ---------------------------------------------------------------- draining


def open_fifo_dir(path: str) -> Optional[int]:
    """The FIFO directory's fd, or None when it is missing or not safe to trust.

    Whoever can create `one<ID>.out` here can speak for VM <ID>: the directory must pass the
    checks `idlevm.host.vmm prepare` makes (a real directory, ours or root's, writable by
    nobody else).
    """
    try:
        fd = open_safe_dir(path, create=False)
    except HostSetupError as exc:
        warn(f"{exc}; nothing read")
        return None
    except OSError as exc:
        warn(f"{path}: {exc.strerror}; nothing read")
        return None
    return None if fd < 0 else fd


def update(state: VmState, data: bytes, now: int) -> None:
    """Fold newly read bytes into a VM's state."""
    lines = split_lines(state.partial, state.discarding, data)
    newest, fields, rejected = newest_valid(lines.complete)
    state.partial, state.discarding = lines.partial, lines.discarding
    state.rejected = min(state.rejected + rejected + lines.overlong, MAX_COUNT)
    if newest is not None:
        state.record, state.fields, state.received = newest, fields, now


def drain(fifo_dir: str, state_dir: str, now: int) -> Dict[int, VmState]:
    """Read every FIFO (under the shared lock) and return each VM's state, by VM id.

    Without the lock (another probe is draining), publish the cache as it stands.
    """
    dir_fd = open_fifo_dir(fifo_dir)
    if dir_fd is None:
        return {}
    try:
        vm_ids = fifo_vm_ids(dir_fd)
        states = StateDir(state_dir)
    except OSError as exc:
        os.close(dir_fd)
        warn(f"{state_dir}: {exc}")
        return {}
    try:
        lock = states.lock()
        cached = states.load()
        if lock is None:
            warn("another probe holds the lock; publishing cached data")
            return {vm_id: cached[vm_id] for vm_id in vm_ids if vm_id in cached}
        try:
            current = {}
            for vm_id in vm_ids:
                state = _drain_one(dir_fd, vm_id, cached.get(vm_id), now)
                if state is not None:
                    current[vm_id] = state
            # VMs whose FIFO is gone (they left this host) are forgotten here.
            try:
                states.save(current)
            except OSError as exc:  # a full disk: publish what was read all the same
                warn(f"cannot save {state_dir}: {exc}")
            return current
        finally:
            states.unlock(lock)
    finally:
        states.close()
        os.close(dir_fd)


def _drain_one(dir_fd: int, vm_id: int, cached: Optional[VmState], now: int) -> Optional[VmState]:
    try:
        data, fifo, writer = read_fifo(dir_fd, vm_id)
    except DrainError as exc:
        warn(str(exc))
        return None
    # State read from another FIFO (removed and made again since) starts afresh.
    state = cached if cached is not None and cached.fifo == fifo else VmState(fifo)
    # No writer: QEMU, which holds the FIFO open while the VM runs, is gone. Its record is
    # not published: the VM may run on another host now, whose data must not be overwritten.
    state.running = writer
    if data:
        update(state, data, now)
    return state


# ---------------------------------------------------------------- publishing


def published(state: VmState, every: bool = False) -> Optional[List[Tuple[str, str]]]:
    """(key, text) pairs of the VM's record in the published format; None without a record
    or when the VM is not running here. `every`: all keys, "" for those without a value."""
    if state.fields is None or not state.running:
        return None
    values = dict(state.fields)  # checked when read, and again when loaded from the cache
    values.update(v=1, rcv=state.received, rej=state.rejected)
    values.setdefault("since", 0)
    pairs = []
    for key, _ in PUBLISHED:
        if key in values and not (key == "rej" and not values[key] and not every):
            kind = protocol.FIELDS[key][0] if key in protocol.FIELDS else "int"
            pairs.append((key, protocol.format_value(kind, values[key])))
        elif every:
            pairs.append((key, ""))
    return pairs


def format_host(states: Dict[int, VmState]) -> str:
    """The classic `IDLE="1;<id>:k=v,...;..."` line, within the client's bounds."""
    parts = ["1"]
    size = 1
    for vm_id in sorted(states):
        pairs = published(states[vm_id])
        if pairs is None:
            continue
        body = ",".join(f"{k}={v}" for k, v in pairs if k != "v")
        record = f"{vm_id}:{body}"
        if len(parts) > MAX_RECORDS or size + 1 + len(record) > MAX_ATTRIBUTE_BYTES:
            warn(f"IDLE is full: VM {vm_id} and later not published")
            break
        parts.append(record)
        size += 1 + len(record)
    return 'IDLE="{}"\n'.format(";".join(parts))


def format_vm(states: Dict[int, VmState]) -> str:
    """One `VM = [ ID=..., DEPLOY_ID=..., MONITOR=<base64> ]` line per VM with a record.

    Every IDLE_* name is written, empty when the record has no value for it: oned merges a
    VM's monitoring into what it had, so a name left out would keep an older record's value.
    """
    names = dict(PUBLISHED)
    out: List[str] = []
    for vm_id in sorted(states):
        pairs = published(states[vm_id], every=True)
        if pairs is None:
            continue
        if len(out) == MAX_RECORDS:
            warn(f"{MAX_RECORDS} records printed: VM {vm_id} and later not published")
            break
        monitor = "".join(f'{names[k]}="{v}"\n' for k, v in pairs)
        encoded = base64.b64encode(monitor.encode("ascii")).decode("ascii")
        out.append(f'VM = [ ID="{vm_id}", DEPLOY_ID="one-{vm_id}", MONITOR="{encoded}" ]\n')
    return "".join(out)


# ---------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m idlevm.host.probe", description=__doc__)
    parser.add_argument("--dir", default=DEFAULT_DIR, help="the FIFO directory")
    parser.add_argument("--state-dir", help="the probe's state (default: DIR/.state)")
    parser.add_argument("--format", choices=("host", "vm"), required=True)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    state_dir = args.state_dir or os.path.join(args.dir, ".state")
    try:
        states = drain(args.dir, state_dir, int(time.time()))
    except Exception as exc:  # never fail the host's monitoring: report and publish nothing
        warn(f"unexpected {type(exc).__name__}: {exc}")
        states = {}
    text = format_host(states) if args.format == "host" else format_vm(states)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
