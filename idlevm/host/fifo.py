"""The FIFOs that carry a VM's serial port: DIR/one<ID>.in and DIR/one<ID>.out.

QEMU's pipe chardev opens both FIFOs read-write and never creates them, so they must exist
before a domain starts. The default DIR, /tmp/vm_serial, sits in a world-writable directory:
anyone could create it first, or plant a symlink in our place. So the directory is opened
once with O_NOFOLLOW, checked through its file descriptor (a real directory, owned by us or
root, writable by nobody else) and every FIFO is then made, inspected and removed relative
to that descriptor. Once the directory is ours alone, nothing inside it can change under us
except by us or root. The directory's parent is trusted (/tmp is root's, and sticky).
"""

import errno
import os
import re
import stat
from typing import Callable, List, Optional, Tuple

DEFAULT_DIR = "/tmp/vm_serial"
# QEMU (user oneadmin in OpenNebula's qemu.conf) and the probe (run by oneadmin) are the only
# ones that open the FIFOs: nobody else needs any access. Group write would let any member of
# the group speak for VM N (write oneN.out) or type into its serial console (write oneN.in).
DIR_MODE = 0o700
FIFO_MODE = 0o600
# OpenNebula VM ids are non-negative integers; 9 digits keeps names and paths short.
_VM_ID = re.compile(r"(0|[1-9][0-9]{0,8})\Z")

Reporter = Callable[[str], None]


class HostSetupError(Exception):
    """The directory or a FIFO is not what it must be: refused, nothing more changed."""


def parse_vm_id(text: str) -> int:
    """The VM id in `text`: canonical decimal digits (no sign, no leading zero), at most 9."""
    # [0-9], not str.isdigit(): that accepts other scripts' digits, which int() converts.
    if not _VM_ID.match(text):
        raise ValueError(f"invalid VM id {text!r}: expected 0 to 999999999, no leading zeros")
    return int(text)


def fifo_vm_id(name: str) -> Optional[int]:
    """The VM id of a `one<ID>.out` file name, None for any other name (`one042.out`,
    `one1.out.bak`...): the probe takes a VM's identity from this name alone."""
    stem, _, suffix = name.partition(".")
    if suffix != "out" or not stem.startswith("one") or not _VM_ID.match(stem[3:]):
        return None
    return int(stem[3:])


def pipe_base(directory: str, vm_id: int) -> str:
    """The path the domain's <serial type='pipe'> names; QEMU appends .in and .out."""
    return os.path.join(directory, f"one{vm_id}")


def fifo_paths(directory: str, vm_id: int) -> Tuple[str, str]:
    """(in_path, out_path): the host writes to .in, QEMU writes the guest's output to .out."""
    base = pipe_base(directory, vm_id)
    return base + ".in", base + ".out"


def prepare_fifos(directory: str, vm_id: int, report: Optional[Reporter] = None) -> None:
    """Create the directory (if missing) and both FIFOs of `vm_id`; reuse FIFOs we own.

    Raises HostSetupError, having changed nothing more, when something is not as expected.
    """
    say = report or _quiet
    dir_fd = open_safe_dir(directory, create=True, report=say)
    try:
        for path in fifo_paths(directory, vm_id):
            _ensure_fifo(dir_fd, path, say)
    finally:
        os.close(dir_fd)


def remove_fifos(directory: str, vm_id: int) -> List[str]:
    """Remove both FIFOs of `vm_id`; return the paths removed (absent ones are fine).

    Both paths are checked before either is removed: anything but a FIFO there is refused
    (HostSetupError) and nothing is removed.
    """
    dir_fd = open_safe_dir(directory, create=False)
    if dir_fd < 0:
        return []
    try:
        present = [path for path in fifo_paths(directory, vm_id) if _lstat_fifo(dir_fd, path)]
        for path in present:
            _unlink(dir_fd, path)
        return present
    finally:
        os.close(dir_fd)


def open_safe_dir(directory: str, create: bool, report: Optional[Reporter] = None) -> int:
    """A file descriptor of `directory`, checked to be safe; -1 if absent and not `create`.

    With `create`, a missing directory is made with mode 0700. Refuses (HostSetupError) a
    symlink, a non-directory, a directory owned by another user than us or root, and one
    writable by group or others.
    """
    # A trailing slash would make the kernel follow a symlink despite O_NOFOLLOW.
    directory = os.path.normpath(directory)
    created = create and _make_dir(directory)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ENOENT and not create:
            return -1
        raise HostSetupError(_open_dir_problem(directory, error)) from None
    try:
        if created:
            # mkdir's mode passed through the umask; set it exactly. Nobody else can have
            # replaced the directory meanwhile: its parent is sticky or ours.
            os.fchmod(dir_fd, DIR_MODE)
            (report or _quiet)(f"created directory {directory} ({DIR_MODE:04o})")
        _check_dir(directory, os.fstat(dir_fd))
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd


def _make_dir(directory: str) -> bool:
    """mkdir 0700 (private until checked); False if something is already there."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return False  # whatever it is, the open and checks that follow judge it
    except OSError as error:
        raise HostSetupError(f"cannot create directory {directory}: {error.strerror}") from None
    return True


def _open_dir_problem(directory: str, error: OSError) -> str:
    # O_DIRECTORY | O_NOFOLLOW fails on a symlink with ELOOP or ENOTDIR (which is checked
    # first depends on the kernel): look, without following, to say which it is.
    try:
        mode = os.lstat(directory).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return f"{directory} is a symlink: refused (the FIFO directory must be a real one)"
    if mode and not stat.S_ISDIR(mode):
        return f"{directory} is a {_kind(mode)}, not a directory: refused"
    return f"cannot open directory {directory}: {error.strerror}"


def _check_dir(directory: str, st: os.stat_result) -> None:
    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise HostSetupError(f"{directory} is not a directory: refused")
    if st.st_uid not in (me, 0):
        raise HostSetupError(
            f"{directory} is owned by uid {st.st_uid}, not by us (uid {me}) or root: refused"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HostSetupError(
            f"{directory} is writable by group or others (mode {mode:04o}): refused"
        )


def _ensure_fifo(dir_fd: int, path: str, say: Reporter) -> None:
    name = os.path.basename(path)
    try:
        os.mkfifo(name, FIFO_MODE, dir_fd=dir_fd)
    except FileExistsError:
        _reuse_fifo(dir_fd, path, say)
        return
    except OSError as error:
        raise HostSetupError(f"cannot create FIFO {path}: {error.strerror}") from None
    # mkfifo's mode passed through the umask: set it exactly. chmod follows symlinks, but
    # only we or root can put anything in this directory.
    _chmod(dir_fd, path)
    say(f"created FIFO {path} ({FIFO_MODE:04o})")


def _reuse_fifo(dir_fd: int, path: str, say: Reporter) -> None:
    st = _lstat(dir_fd, path)
    if st is None:  # removed since mkfifo failed: only we or root could; do not fight
        raise HostSetupError(f"{path} vanished while being created: refused")
    if not stat.S_ISFIFO(st.st_mode):
        raise HostSetupError(f"{path} exists and is a {_kind(st.st_mode)}, not a FIFO: refused")
    me = os.geteuid()
    if st.st_uid != me:
        raise HostSetupError(
            f"{path} is a FIFO owned by uid {st.st_uid}, not by us (uid {me}): refused"
        )
    if stat.S_IMODE(st.st_mode) != FIFO_MODE:
        _chmod(dir_fd, path)
        say(f"FIFO {path} exists: reused, mode set to {FIFO_MODE:04o}")
    else:
        say(f"FIFO {path} exists: reused")


def _lstat_fifo(dir_fd: int, path: str) -> bool:
    """True if `path` is a FIFO, False if absent; refuses anything else."""
    st = _lstat(dir_fd, path)
    if st is None:
        return False
    if not stat.S_ISFIFO(st.st_mode):
        raise HostSetupError(f"{path} is a {_kind(st.st_mode)}, not a FIFO: not removed")
    return True


def _lstat(dir_fd: int, path: str) -> Optional[os.stat_result]:
    try:
        return os.stat(os.path.basename(path), dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise HostSetupError(f"cannot inspect {path}: {error.strerror}") from None


def _chmod(dir_fd: int, path: str) -> None:
    try:
        os.chmod(os.path.basename(path), FIFO_MODE, dir_fd=dir_fd)
    except OSError as error:
        raise HostSetupError(f"cannot set the mode of {path}: {error.strerror}") from None


def _unlink(dir_fd: int, path: str) -> None:
    try:
        os.unlink(os.path.basename(path), dir_fd=dir_fd)
    except FileNotFoundError:
        pass  # already gone: the goal is reached
    except OSError as error:
        raise HostSetupError(f"cannot remove {path}: {error.strerror}") from None


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    for test, name in kinds:
        if test(mode):
            return name
    return "special file"


def _quiet(message: str) -> None:
    """The default reporter: library callers that want no messages get none."""
