"""Collectors: what the VM is doing, read from /proc, /sys, utmp, tty times and nvidia-smi.

Every path is under a root directory ("/" in a VM, a fake tree in tests). Each collector
fails alone: an exception or malformed content makes its values None (reported once), and
the other signals still count. Rates come from the difference between two samples, so the
first sample has none.
"""

import errno
import os
import struct
import time

from . import log

# glibc's struct utmp (Linux, all architectures glibc supports with 32-bit ut_tv):
# type, pid, line, id, user, host, exit status, session, tv_sec, tv_usec, addr_v6, unused.
UTMP = struct.Struct("=h2xi32s4s32s256shhiii4i20s")
USER_PROCESS = 7
# Devices whose I/O is not a disk's (loop files, RAM disks, CD-ROMs), or is counted again
# on the disks under them (device-mapper, software RAID).
SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd", "dm-", "md")
# Interfaces whose traffic is local or is counted again on the real NIC: loopback, and
# container or VM bridges and their veth pairs.
SKIP_NETS = ("lo", "veth", "docker", "br-", "virbr", "cni", "flannel")
SECTOR = 512
GPU_TIMEOUT = 5.0


def read_text(path):
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def cpu_counters(root):
    """(busy, steal, total) jiffies from the first line of /proc/stat."""
    fields = read_text(os.path.join(root, "proc/stat")).split("\n", 1)[0].split()
    if len(fields) < 9 or fields[0] != "cpu":
        raise ValueError("no cpu line in /proc/stat")
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def load_average(root):
    """The 1-minute load average from /proc/loadavg."""
    value = float(read_text(os.path.join(root, "proc/loadavg")).split()[0])
    if not 0 <= value < 1e6:
        raise ValueError(f"load average {value} out of range")
    return value


def real_disks(root):
    """Names of the whole disks in /sys/block that are not virtual or stacked devices."""
    names = os.listdir(os.path.join(root, "sys/block"))
    # /sys/block spells a "/" in a device name as "!" (cciss!c0d0 is cciss/c0d0).
    return {n.replace("!", "/") for n in names if not n.startswith(SKIP_DISKS)}


def disk_bytes(root):
    """Bytes read + written so far on the real disks, from /proc/diskstats."""
    disks = real_disks(root)
    total = 0
    for line in read_text(os.path.join(root, "proc/diskstats")).splitlines():
        fields = line.split()
        if len(fields) >= 10 and fields[2] in disks:
            total += (int(fields[5]) + int(fields[9])) * SECTOR  # sectors read, written
    return total


def net_bytes(root):
    """{interface: (received, sent)} bytes so far from /proc/net/dev, local ones skipped."""
    counters = {}
    for line in read_text(os.path.join(root, "proc/net/dev")).splitlines()[2:]:
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or name.startswith(SKIP_NETS):
            continue
        fields = rest.split()
        if len(fields) < 9:
            raise ValueError(f"short line for {name} in /proc/net/dev")
        counters[name] = (int(fields[0]), int(fields[8]))
    return counters


def utmp_sessions(root, ignore_users=()):
    """tty line names ("pts/0", ":0") of the user sessions in utmp, ignored users left out."""
    path = os.path.join(root, "var/run/utmp")
    if not os.path.exists(path):
        path = os.path.join(root, "run/utmp")
    with open(path, "rb") as handle:
        data = handle.read(UTMP.size * 4096)  # bounded: a real utmp holds a few records
    lines = []
    for offset in range(0, len(data) - UTMP.size + 1, UTMP.size):
        record = UTMP.unpack_from(data, offset)
        if record[0] != USER_PROCESS:
            continue
        user = record[4].split(b"\0", 1)[0].decode("ascii", "replace")
        if user not in ignore_users:
            lines.append(record[2].split(b"\0", 1)[0].decode("ascii", "replace"))
    return lines


def input_age(root, lines, now):
    """Seconds since the most recent input on any of the ttys (their atime), or None."""
    newest = None
    for line in lines:
        if not line or ".." in line or line.startswith("/"):
            continue  # X displays (":0") have no tty; a hostile utmp could point anywhere
        try:
            atime = os.stat(os.path.join(root, "dev", line)).st_atime
        except OSError:
            continue  # the session ended since utmp was written
        newest = atime if newest is None else max(newest, atime)
    return None if newest is None else max(0, int(now - newest))


def process_scan(root, busy_names, ignore_names):
    """(busy process count, {pid: cpu ticks} of ignored processes) from /proc/<pid>."""
    busy, ticks = 0, {}
    proc = os.path.join(root, "proc")
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            comm = read_text(os.path.join(proc, pid, "comm")).rstrip("\n")
            if comm in busy_names:
                busy += 1
            if comm in ignore_names:
                # utime and stime: fields 14 and 15, counted after the ")" ending comm.
                stat = read_text(os.path.join(proc, pid, "stat")).rsplit(")", 1)[1].split()
                ticks[pid] = int(stat[11]) + int(stat[12])
        except (OSError, ValueError, IndexError):
            continue  # the process exited while we looked, or is a kernel oddity
    return busy, ticks


def gpu_utilization(command="nvidia-smi"):
    """Highest utilization % over the GPUs nvidia-smi reports; None without nvidia-smi."""
    path = which(command)
    if path is None:
        return None
    import subprocess  # only on GPU VMs: it would cost every VM memory for nothing

    args = [path, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=GPU_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()  # not communicate(): a grandchild may hold the pipe open for long
        proc.stdout.close()
        raise
    if proc.returncode != 0:
        raise OSError(errno.EIO, f"nvidia-smi exited with {proc.returncode}")
    values = [float(v) for v in out.decode("ascii", "replace").split()]
    if not values or not all(0 <= v <= 100 for v in values):
        raise ValueError(f"unexpected nvidia-smi output {out[:80]!r}")
    return max(values)


def which(command):
    """The executable `command` (a name looked up in PATH, or a path), or None.

    shutil.which, without importing shutil and its dependencies into every agent."""
    if os.sep in command:
        candidates = [command]
    else:
        path = os.environ.get("PATH") or os.defpath
        candidates = [os.path.join(d, command) for d in path.split(os.pathsep) if d]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _rate(new, old, seconds):
    """Per-second rate of a counter; None when it went backwards (reset, wrap)."""
    if new is None or old is None or seconds <= 0 or new < old:
        return None
    return (new - old) / seconds


class Sampler:
    """Takes samples; keeps only the previous sample's counters (bounded memory)."""

    def __init__(self, config, root="/", gpu_command="nvidia-smi", clock=time.monotonic):
        self.config = config
        self.root = root
        self.gpu_command = gpu_command
        self.clock = clock
        self.previous = None  # (monotonic time, counters dict) of the last sample

    def _guard(self, name, function, *args):
        """function(*args), or None when it fails (reported once per collector)."""
        try:
            value = function(*args)
        except Exception as error:  # a collector must never kill the agent
            log.once("collector " + name, f"{name}: unavailable ({error!r})")
            return None
        log.forget("collector " + name)
        return value

    def _counters(self):
        config = self.config
        counters = {
            "cpu": self._guard("cpu", cpu_counters, self.root),
            "disk": self._guard("disk", disk_bytes, self.root),
            "net": self._guard("net", net_bytes, self.root),
            "ignored": None,
            "procs": None,
        }
        if config.busy_processes or config.ignore_processes:
            scan = self._guard(
                "procs", process_scan, self.root, config.busy_processes, config.ignore_processes
            )
            if scan is not None:
                counters["procs"], counters["ignored"] = scan
                if not config.busy_processes:
                    counters["procs"] = None  # only scanned for IGNORE_PROCESSES
        return counters

    def sample(self, now=None):
        """A dict of the signals; rates are None on the first sample. `now`: wall clock."""
        now = time.time() if now is None else now
        moment, counters = self.clock(), self._counters()
        values = {"load": self._guard("load", load_average, self.root)}
        values["procs"] = counters["procs"]
        lines = self._guard("sessions", utmp_sessions, self.root, self.config.ignore_users)
        values["sess"] = None if lines is None else len(lines)
        values["input"] = None if not lines else input_age(self.root, lines, now)
        values["gpu"] = self._guard("gpu", gpu_utilization, self.gpu_command)
        if self.previous is not None:
            old_moment, old = self.previous
            values.update(self._rates(counters, old, moment - old_moment))
        self.previous = (moment, counters)
        return values

    def _rates(self, new, old, seconds):
        values = {}
        if new["cpu"] and old["cpu"]:
            values["cpu"], values["steal"] = cpu_percent(
                new["cpu"], old["cpu"], ignored_ticks(new["ignored"], old["ignored"])
            )
        if new["disk"] is not None:
            values["disk"] = _rate(new["disk"], old["disk"], seconds)
        if new["net"] is not None and old["net"] is not None:
            both = [n for n in new["net"] if n in old["net"]]  # interfaces come and go
            for index, key in enumerate(("rx", "tx")):
                values[key] = _rate(
                    sum(new["net"][n][index] for n in both),
                    sum(old["net"][n][index] for n in both),
                    seconds,
                )
        return values


def ignored_ticks(new, old):
    """CPU ticks the ignored processes used between two scans (processes in both)."""
    if not new or not old:
        return 0
    return sum(max(0, new[pid] - old[pid]) for pid in new if pid in old)


def cpu_percent(new, old, ignored=0):
    """(busy %, steal %) between two cpu_counters; (None, None) when counters went back."""
    busy, steal, total = (n - o for n, o in zip(new, old))
    if total <= 0 or busy < 0 or steal < 0:
        return None, None
    busy = max(0, busy - ignored)
    return min(100.0, 100.0 * busy / total), min(100.0, 100.0 * steal / total)
