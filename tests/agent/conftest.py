"""A fake machine: /proc, /sys/block, utmp and /dev/pts files under a temporary root."""

import os
import struct

import pytest

NOW = 1764030000  # wall clock of the samples
UTMP = struct.Struct("=h2xi32s4s32s256shhiii4i20s")
LOGIN_PROCESS, USER_PROCESS, DEAD_PROCESS = 6, 7, 8

# Realistic snapshots (a 4-vCPU VM): the first sample of every scenario.
STAT = (
    "cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} 0 0\n"
    "cpu0 2533038 72674 771179 11707120 4170 0 6298 0 0 0\n"
    "intr 2116424233 9 0 0 0 0 0 0 0 1 0 0 0 0 0 0\n"
    "ctxt 3841719823\nbtime 1763900000\nprocesses 1223342\n"
    "procs_running 1\nprocs_blocked 0\nsoftirq 1104218510 0 260016441 27 31562014\n"
)
CPU0 = {
    "user": 10132153,
    "nice": 290696,
    "system": 3084719,
    "idle": 46828483,
    "iowait": 16683,
    "irq": 0,
    "softirq": 25195,
    "steal": 1200,
}
DISKSTATS = (
    "   7       0 loop0 {loop} 0 {loop} 20 0 0 0 0 0 24 20 0 0 0 0\n"
    "   8       0 sda 235601 61360 {sda_r} 76110 480193 418283 {sda_w} 1006528 0 661048 1082638\n"
    "   8       1 sda1 235329 61360 {sda_r} 76013 480193 418283 {sda_w} 1006528 0 661040 1082541\n"
    " 253       0 dm-0 296413 0 {dm} 113776 898476 0 {dm} 3062024 0 661828 3175800\n"
    "  11       0 sr0 14 0 1024 3 0 0 0 0 0 8 3\n"
)
NETDEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|"
    "bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo: {lo} 1224601    0    0    0     0          0         0 {lo} 1224601 0 0 0 0 0 0\n"
    "  eth0: {rx}  981733    0 1208    0     0          0         0 {tx}  405061 0 0 0 0 0 0\n"
    "docker0: {lo}   0    0    0    0     0          0         0 {lo}    0    0 0 0 0 0 0\n"
)


def utmp_record(kind, line, user, pid=1000):
    host = b"203.0.113.9"
    return UTMP.pack(kind, pid, line.encode(), b"ts/0", user.encode(), host, 0, 0, 0, NOW, 0,
                     0, 0, 0, 0, b"")  # fmt: skip


class FakeMachine:
    """Writes one sample's files; call `write` again with changed counters for the next."""

    def __init__(self, root):
        self.root = str(root)
        self.now = NOW
        for sub in ("proc/net", "sys/block", "var/run", "dev/pts"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        for disk in ("sda", "loop0", "dm-0", "sr0"):
            os.makedirs(os.path.join(self.root, "sys/block", disk), exist_ok=True)

    def path(self, relative):
        return os.path.join(self.root, relative)

    def put(self, relative, text):
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(self.path(relative), mode) as handle:
            handle.write(text)

    def write(self, cpu=None, load="0.02", sda=(4208144, 9612048), loop=0, rx=0, tx=0, lo=0):
        """One snapshot: cpu counters, loadavg, disk sectors, network bytes."""
        self.put("proc/stat", STAT.format(**(cpu or CPU0)))
        self.put("proc/loadavg", f"{load} 0.05 0.01 1/412 28011\n")
        dm = sda[0] + sda[1]
        self.put("proc/diskstats", DISKSTATS.format(sda_r=sda[0], sda_w=sda[1], loop=loop, dm=dm))
        self.put("proc/net/dev", NETDEV.format(rx=180112 + rx, tx=90200 + tx, lo=lo))

    def sessions(self, *sessions):
        """utmp with a getty, a dead entry and (line, user, seconds since input) sessions."""
        records = [utmp_record(LOGIN_PROCESS, "tty1", "LOGIN")]
        for line, user, age in sessions:
            records.append(utmp_record(USER_PROCESS, line, user))
            tty = self.path("dev/" + line)
            with open(tty, "w"):
                pass
            os.utime(tty, (NOW - age, NOW - age))
        records.append(utmp_record(DEAD_PROCESS, "pts/9", ""))
        self.put("var/run/utmp", b"".join(records))

    def process(self, pid, comm, ticks=(0, 0)):
        os.makedirs(self.path(f"proc/{pid}"), exist_ok=True)
        self.put(f"proc/{pid}/comm", comm + "\n")
        utime, stime = ticks
        rest = " ".join(["S", "1", "1", "1", "0", "-1", "4194560", "0", "0", "0", "0"])
        self.put(f"proc/{pid}/stat", f"{pid} ({comm}) {rest} {utime} {stime} 0 0 20 0 1 0\n")


class FakeClock:
    """A monotonic clock the test moves forward."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def machine(tmp_path):
    return FakeMachine(tmp_path / "root")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def base_cpu():
    """A fresh copy of CPU0's counters, for tests that advance them."""
    return dict(CPU0)
