"""The probe's memory between runs: one JSON file for all the host's VMs, under a lock.

Per VM: the unfinished line carried to the next run, the last good line with the host time
it was read (so a VM whose agent stopped is published with its true age, never as freshly
idle), and the count of rejected lines. Both probes (host and vm format) drain the same
FIFOs, so they share this state under an exclusive flock: whichever runs first reads the
pipe, and both publish from the cache.

A VM's state belongs to one FIFO (device and inode): when `cleanup` and `prepare` make new
FIFOs (the VM was saved and restored, or left and came back), the old state is not carried
over. One file rather than one per VM: renaming 256 files per run cost more than the rest
of the probe together (bench/probe.py).

The file is ours (a 0700 directory), but a damaged one must not stop the probe: it is
reported and every VM starts afresh. Cached lines are decoded again when loaded.
"""

import errno
import fcntl
import json
import os
import stat
import sys
import time
from typing import Any, Dict, Optional, Tuple

from idlevm import protocol
from idlevm.host.drain import Record, check
from idlevm.host.fifo import parse_vm_id

LOCK_WAIT = 5.0  # seconds; past that, publish from the cache without draining
STATE_FILE = "state.json"
MAX_STATE_BYTES = 4 * 1024 * 1024  # 1000 VMs at their largest fit in well under this
_MAX_PARTIAL = protocol.MAX_LINE


class VmState:
    """What the probe remembers about one VM."""

    __slots__ = (
        "discarding",
        "fields",
        "fifo",
        "partial",
        "received",
        "record",
        "rejected",
        "running",
    )

    def __init__(self, fifo: Tuple[int, int] = (0, 0)) -> None:
        self.fifo = fifo  # (st_dev, st_ino) of the FIFO this state was read from
        self.partial = b""  # an unfinished line
        self.discarding = False  # inside an over-long line
        self.record: Optional[bytes] = None  # the newest valid line
        self.fields: Optional[Record] = None  # and its decoded fields
        self.received = 0  # host clock (epoch s) when `record` was read
        self.rejected = 0  # lines rejected since the FIFO was created (cumulative)
        self.running = True  # a writer (QEMU) held the FIFO open at the last read

    def to_json(self) -> Dict[str, Any]:
        return {
            "fifo": list(self.fifo),
            # latin-1 maps every byte to one code point: any bytes round-trip through JSON.
            "partial": self.partial.decode("latin-1"),
            "discarding": self.discarding,
            "line": None if self.record is None else self.record.decode("ascii"),
            "received": self.received,
            "rejected": self.rejected,
            "running": self.running,
        }

    @classmethod
    def from_json(cls, data: Any) -> "VmState":
        """Raises ValueError (or a subclass) on anything that is not a state we wrote."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        fifo = data.get("fifo")
        if not isinstance(fifo, list) or len(fifo) != 2:
            raise ValueError("no FIFO identity")
        state = cls((_count(fifo[0], 2**64), _count(fifo[1], 2**64)))
        state.partial = _text(data.get("partial", "")).encode("latin-1")[:_MAX_PARTIAL]
        state.discarding = data.get("discarding") is True
        line = data.get("line")
        if line is not None:
            raw = _text(line).encode("ascii")
            state.fields = check(raw)
            if state.fields is None:
                raise ValueError("cached line is not a valid record")
            state.record = raw
            state.received = _count(data.get("received"))
        state.rejected = _count(data.get("rejected", 0))
        state.running = data.get("running") is True
        return state


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def _count(value: Any, limit: int = 2**53) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError("not a count")
    return value


class StateDir:
    """The probe's state directory: created 0700 if missing, refused if unsafe."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(path, flags)
        info = os.fstat(self.fd)
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o077:
            os.close(self.fd)
            raise PermissionError(f"{path}: not ours or open to others")

    def close(self) -> None:
        os.close(self.fd)

    def lock(self, wait: Optional[float] = None) -> Optional[int]:
        """An exclusive lock (its fd, to pass to unlock), or None after `wait` seconds."""
        wait = LOCK_WAIT if wait is None else wait
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open("lock", flags, 0o600, dir_fd=self.fd)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    return None
            time.sleep(0.05)

    @staticmethod
    def unlock(fd: int) -> None:
        os.close(fd)  # closing drops the flock

    def load(self) -> Dict[int, VmState]:
        """Every VM's state, by VM id; {} (reported) when the file is damaged."""
        try:
            fd = os.open(STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                _warn(f"{STATE_FILE}: {exc.strerror}; starting afresh")
            return {}
        try:
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise ValueError("not a regular file")
                data = json.loads(handle.read(MAX_STATE_BYTES + 1).decode("utf-8"))
            vms = data["vms"] if isinstance(data, dict) else None
            if not isinstance(vms, dict):
                raise ValueError("no VM table")
            return {parse_vm_id(key): VmState.from_json(value) for key, value in vms.items()}
        except (ValueError, UnicodeError, KeyError) as exc:
            _warn(f"{STATE_FILE}: damaged ({exc}); starting afresh")
            return {}

    def save(self, states: Dict[int, VmState]) -> None:
        """Write atomically: a probe killed mid-write leaves the old file, not half a new one."""
        data = {"vms": {str(vm_id): s.to_json() for vm_id, s in sorted(states.items())}}
        temp = STATE_FILE + ".tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=self.fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(data, sort_keys=True).encode("ascii"))
        os.rename(temp, STATE_FILE, src_dir_fd=self.fd, dst_dir_fd=self.fd)


def forget(state_dir: str, vm_id: int) -> bool:
    """Drop one VM's cached state (for `vmm cleanup`); True when there was some."""
    if not os.path.isdir(state_dir):
        return False
    states = StateDir(state_dir)
    try:
        lock = states.lock()
        if lock is None:
            return False  # the probe will drop it anyway: its FIFO is gone
        try:
            cached = states.load()
            if cached.pop(vm_id, None) is None:
                return False
            states.save(cached)
            return True
        finally:
            states.unlock(lock)
    finally:
        states.close()


def _warn(message: str) -> None:
    print("idlevm probe: " + message, file=sys.stderr)
