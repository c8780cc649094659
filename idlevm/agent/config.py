"""The agent's settings: an INI file with one section, [agent]; every key is optional.

A bad value never stops the agent: it is reported by key name and the default used, because
a VM whose agent refuses to start looks exactly like a VM without an agent.
"""

import configparser

from . import log

DEFAULT_PATH = "/etc/idlevm/agent.conf"
SECTION = "agent"

# key: (default, kind, minimum). Keys are case-insensitive (configparser lowers them).
# Why these defaults:
# - INTERVAL 60 s: one line a minute is plenty for decisions counted in hours, and keeps the
#   agent's cost negligible. The minimum is 1 s (benchmarks and tests use short intervals).
# - CPU_PCT 3: GCP's idle-VM recommender calls a VM idle under 3% CPU of one vCPU; we measure
#   % of the whole VM (what /proc/stat gives without per-CPU bookkeeping), which is the same
#   on 1 vCPU and more lenient on bigger VMs, where background daemons add up.
# - LOAD 0.5: the 1-minute load average also counts tasks blocked on I/O, which CPU misses;
#   an idle Linux VM sits well under 0.1, one half-busy thread gives 0.5.
# - DISK_BPS 100000: journald, cron and log rotation write a few KB/s on an idle VM.
# - NET_RX_BPS 2000, NET_TX_BPS 1000: GCP's thresholds (received 2 KB/s, sent 1 KB/s).
# - INPUT_IDLE_SECONDS 3600: a forgotten login (ssh, tmux) is not work after an hour.
# - GPU_PCT 5: nvidia-smi utilization of an unused GPU is 0; 5 absorbs driver polling.
# - IDLE_WINDOW 0 s: how long the VM must stay idle before the line says state=idle. The
#   host decides how long is long enough from `since`, so by default the agent reports
#   every idle sample; raise it to make short lulls (between batch jobs) report busy.
DEFAULTS = {
    "log": ("/dev/ttyS0", "str", None),
    "interval": (60, "int", 1),
    "cpu_pct": (3.0, "float", 0),
    "load": (0.5, "float", 0),
    "disk_bps": (100000.0, "float", 0),
    "net_rx_bps": (2000.0, "float", 0),
    "net_tx_bps": (1000.0, "float", 0),
    "input_idle_seconds": (3600, "int", 0),
    "gpu_pct": (5.0, "float", 0),
    "idle_window": (0, "int", 0),
    "ignore_users": (frozenset(), "names", None),
    "busy_processes": (frozenset(), "names", None),
    "ignore_processes": (frozenset(), "names", None),
}

# The kernel keeps 15 characters of a process name in /proc/<pid>/comm.
COMM_LEN = 15


class Config:
    """Plain settings object: one attribute per key, in lower case."""

    __slots__ = ("path", *DEFAULTS)

    def __init__(self, path=None, **values):
        self.path = path
        for key, (default, _kind, _minimum) in DEFAULTS.items():
            setattr(self, key, values.get(key, default))

    def __repr__(self):
        pairs = ", ".join(f"{k}={getattr(self, k)!r}" for k in DEFAULTS)
        return f"Config({pairs})"


def parse_value(key, raw):
    """The typed value of one key's text; raises ValueError with a message naming the key."""
    _default, kind, minimum = DEFAULTS[key]
    raw = raw.strip()
    if kind == "str":
        if not raw:
            raise ValueError(f"{key.upper()}: empty")
        return raw
    if kind == "names":
        names = (name.strip() for name in raw.split(","))
        if key.endswith("_processes"):
            names = (name[:COMM_LEN] for name in names)
        return frozenset(name for name in names if name)
    try:
        value = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise ValueError(f"{key.upper()}: {raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{key.upper()}: {raw!r} is not a finite number")
    if value < minimum:
        raise ValueError(f"{key.upper()}: {raw} is under the minimum {minimum}")
    return value


def _read(path):
    """The [agent] section's items, or {} (with a message) when the file is not usable."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as error:
        log.warn(f"config {path}: {error.strerror or error}; using defaults")
        return {}
    except (configparser.Error, UnicodeDecodeError) as error:
        log.warn(f"config {path}: not a valid INI file ({error}); using defaults")
        return {}
    if not parser.has_section(SECTION):
        log.warn(f"config {path}: no [{SECTION}] section; using defaults")
        return {}
    return dict(parser.items(SECTION))


def load(path=DEFAULT_PATH):
    """The settings from `path`; every problem is reported and replaced by the default."""
    values = {}
    for key, raw in _read(path).items():
        if key not in DEFAULTS:
            log.warn(f"config {path}: unknown key {key.upper()} ignored")
            continue
        try:
            values[key] = parse_value(key, raw)
        except ValueError as error:
            default = DEFAULTS[key][0]
            log.warn(f"config {path}: {error}; using the default {default!r}")
    return Config(path=path, **values)
