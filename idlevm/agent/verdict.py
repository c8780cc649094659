"""The verdict: is the VM idle now, and since when has it been idle without a break.

Idle means every signal we have is under its threshold. A missing signal (None) does not
block idleness, except CPU: without it we know nothing, and missing data must never make a
VM look idle (it could be suspended while working), so no CPU means busy.
"""


def busy_reasons(values, config):
    """The names of the signals that make this sample busy; empty when it is idle."""
    if values.get("cpu") is None:
        return ["cpu unknown"]
    limits = (
        ("cpu", config.cpu_pct),
        ("load", config.load),
        ("disk", config.disk_bps),
        ("rx", config.net_rx_bps),
        ("tx", config.net_tx_bps),
        ("gpu", config.gpu_pct),
    )
    reasons = [key for key, limit in limits if _at_least(values.get(key), limit)]
    # A session is work while someone typed in it recently.
    age = values.get("input")
    if values.get("sess") and age is not None and age < config.input_idle_seconds:
        reasons.append("input")
    if values.get("procs"):
        reasons.append("procs")
    return reasons


def _at_least(value, limit):
    return value is not None and value >= limit


class Tracker:
    """Turns a series of samples into (state, since).

    `since` is the wall-clock second of the first idle sample of the current stretch (a
    conservative start: the VM may have gone idle up to one interval earlier); one busy
    sample ends the stretch. The state is "idle" once the stretch has lasted IDLE_WINDOW
    seconds, measured on the monotonic clock so a wall-clock step cannot shorten or
    lengthen it.
    """

    def __init__(self, idle_window=0):
        self.idle_window = idle_window
        self.start_wall = None  # wall second the stretch began; None while busy
        self.start_mono = None

    def update(self, idle, wall, mono):
        """(state, since) after one sample: since is 0 while busy."""
        if not idle:
            self.start_wall = self.start_mono = None
            return "busy", 0
        if self.start_wall is None:
            self.start_wall, self.start_mono = int(wall), mono
        if mono - self.start_mono < self.idle_window:
            return "busy", 0
        # A wall clock set back must not put `since` after the record's own time.
        return "idle", min(self.start_wall, int(wall))
