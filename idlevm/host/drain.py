"""Reading the VMs' FIFOs without ever blocking, and picking each VM's newest valid line.

Everything read here comes from a VM whose owner controls it. So:
- the VM id comes only from the FIFO's name (`one<ID>.out`, canonical decimal);
- a FIFO is opened only if it is one (checked with lstat before opening, so opening a
  planted device file has no side effect, and with fstat after: the same inode), never
  through a symlink, and non-blocking: no writer, an empty pipe or a paused VM cost nothing;
- at most READ_LIMIT bytes are read per FIFO and run, and at most WINDOW lines examined, so
  a VM flooding its pipe costs bounded time and memory and cannot delay the others;
- each line is checked by idlevm.protocol.decode() plus the published format's own rules;
  whatever fails is dropped and counted.

QEMU opens both FIFOs read-write, so while the VM runs a read sees "no data" (EAGAIN), not
end of file, and our closing the read end never breaks QEMU's writes.
"""

import errno
import os
import stat
from typing import Dict, List, Optional, Tuple

from idlevm import protocol
from idlevm.host.fifo import fifo_vm_id

# The default capacity of a Linux pipe: a backlog an honest agent can leave is read whole.
READ_LIMIT = 65536
# Newest lines examined per run: an agent writing every 10 s between probe runs 10 min apart
# leaves 60; older lines beyond the window are counted as rejected (flood).
WINDOW = 128


class DrainError(Exception):
    """A FIFO could not be read; the message is for the operator's log."""


def fifo_vm_ids(dir_fd: int) -> List[int]:
    """VM ids of the `one<ID>.out` names in the directory, ascending (not yet checked)."""
    ids = (fifo_vm_id(name) for name in os.listdir(dir_fd))
    return sorted(vm_id for vm_id in ids if vm_id is not None)


def read_fifo(
    dir_fd: int, vm_id: int, limit: int = READ_LIMIT
) -> Tuple[bytes, Tuple[int, int], bool]:
    """What the VM's `.out` FIFO holds now (at most `limit` bytes), the FIFO's identity
    (device, inode), and whether a writer holds it open; raises DrainError."""
    name = f"one{vm_id}.out"
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise DrainError(f"{name}: {exc.strerror}") from None
    if not stat.S_ISFIFO(before.st_mode):
        raise DrainError(f"{name}: not a FIFO, ignored")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise DrainError(f"{name}: {exc.strerror}") from None
    try:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise DrainError(f"{name}: replaced while opening, ignored")
        data, writer = _read_available(fd, limit)
        return data, (after.st_dev, after.st_ino), writer
    finally:
        os.close(fd)


def _read_available(fd: int, limit: int) -> Tuple[bytes, bool]:
    """Up to `limit` bytes, and False when the FIFO has no writer (end of file)."""
    chunks: List[bytes] = []
    total = 0
    while total < limit:
        try:
            data = os.read(fd, limit - total)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                break  # a writer, but nothing more written
            raise DrainError(f"read: {exc.strerror}") from None
        if not data:
            return b"".join(chunks), False
        chunks.append(data)
        total += len(data)
    return b"".join(chunks), True


class Lines:
    """Complete lines cut from a FIFO's bytes, and what is left for the next run."""

    __slots__ = ("complete", "discarding", "overlong", "partial")

    def __init__(
        self, complete: List[bytes], partial: bytes, discarding: bool, overlong: int
    ) -> None:
        self.complete = complete
        self.partial = partial  # an unfinished line, carried to the next run
        self.discarding = discarding  # inside a line already too long: skip to its end
        self.overlong = overlong  # lines dropped for length before being split out


def split_lines(partial: bytes, discarding: bool, data: bytes) -> Lines:
    """Cut `partial + data` into lines; a line longer than MAX_LINE is dropped unread."""
    overlong = 0
    buffer = partial + data
    if discarding:
        end = buffer.find(b"\n")
        if end < 0:
            return Lines([], b"", True, 0)
        buffer = buffer[end + 1 :]
    pieces = buffer.split(b"\n")
    rest = pieces.pop()
    if len(rest) >= protocol.MAX_LINE:  # its newline would make it longer still
        overlong += 1
        rest = b""
        discarding = True
    else:
        discarding = False
    return Lines(pieces, rest, discarding, overlong)


Record = Dict[str, protocol.Value]


def newest_valid(lines: List[bytes]) -> Tuple[Optional[bytes], Optional[Record], int]:
    """The newest line that is a valid record, its fields, and how many lines were rejected.

    Blank lines are not counted (the agent ends a cut line with a newline). Lines older than
    the newest WINDOW are not examined but counted: only a flooding VM leaves that many.
    """
    lines = [line for line in lines if line.strip(b"\r")]
    rejected = max(0, len(lines) - WINDOW)
    newest: Optional[bytes] = None
    fields: Optional[Record] = None
    for line in reversed(lines[-WINDOW:]):
        record = check(line)
        if record is None:
            rejected += 1
        elif fields is None:
            newest, fields = line, record
    return newest, fields, rejected


def check(line: bytes) -> Optional[Record]:
    """The fields of a line that is a valid record, None for any other line."""
    try:
        return protocol.decode(line)
    except protocol.ProtocolError:
        return None
