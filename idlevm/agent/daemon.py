"""The agent's loop: sample, decide, encode, write; every INTERVAL seconds until stopped.

python3 -m idlevm.agent [--config FILE] [--once] [--stdout] [--root DIR]
"""

import argparse
import signal
import threading
import time

from idlevm import protocol

from . import config as config_module
from . import log
from .signals import Sampler
from .verdict import Tracker, busy_reasons
from .writer import STDOUT, Writer

SIGNALS = ("cpu", "steal", "load", "disk", "rx", "tx", "sess", "input", "procs", "gpu")
FIRST_WAIT = 1.0  # the first record's deltas span this long: a record soon after start


def encode(record):
    """The line for `record`; a field the protocol refuses is left out, not the record."""
    try:
        return protocol.encode(record)
    except protocol.ProtocolError:
        pass
    required = {key: record[key] for key in protocol.REQUIRED}
    kept = dict(required)
    for key, value in record.items():
        if key in required:
            continue
        try:
            protocol.encode(dict(required, **{key: value}))
        except (protocol.ProtocolError, ValueError, TypeError, OverflowError):
            log.once("field " + key, f"{key}: value {value!r} left out of the record")
            continue
        kept[key] = value
    return protocol.encode(kept)


class Agent:
    """One agent: a sampler, a verdict tracker and a writer, and the record counter."""

    def __init__(self, config, writer, root="/", sampler=None):
        self.config = config
        self.writer = writer
        self.sampler = sampler or Sampler(config, root=root)
        self.tracker = Tracker(config.idle_window)
        self.seq = 0

    def record(self, values, wall, mono):
        """The record dict for one sample (None values left out)."""
        state, since = self.tracker.update(not busy_reasons(values, self.config), wall, mono)
        record = {"seq": self.seq, "ts": int(wall), "state": state, "since": since}
        for key in SIGNALS:
            if values.get(key) is not None:
                record[key] = values[key]
        record["drops"] = self.writer.drops
        return record

    def step(self):
        """Sample, then write one record; True when it was written.

        seq counts records made, written or not: a gap tells the host what it missed."""
        try:
            values = self.sampler.sample()
        except Exception as error:  # collectors guard themselves; this is the last resort
            log.once("sample", f"cannot sample ({error!r})")
            values = {}  # no CPU: reported busy
        wall, mono = time.time(), time.monotonic()
        try:
            line = encode(self.record(values, wall, mono))
        except Exception as error:  # even the fallback failed: count it as a drop
            log.once("encode", f"cannot encode a record ({error!r})")
            self.writer.drops += 1
            self.seq += 1
            return False
        self.seq += 1
        return self.writer.write(line)

    def run(self, stop, once=False):
        """Loop until `stop` (a threading.Event) is set; with once, write one record."""
        self.sampler.sample()  # the baseline for the first record's rates
        wait = min(FIRST_WAIT, self.config.interval)
        deadline = time.monotonic() + wait
        while not stop.wait(max(0.0, deadline - time.monotonic())):
            self.step()
            if once:
                return
            # Keep to the schedule; after a long stall (suspend), restart it from now.
            deadline += self.config.interval
            if deadline < time.monotonic():
                deadline = time.monotonic() + self.config.interval


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="idlevm-agent", description="Report this VM's idleness, one line per interval."
    )
    parser.add_argument("--config", default=config_module.DEFAULT_PATH, help="INI file")
    parser.add_argument("--once", action="store_true", help="write one record and exit")
    parser.add_argument("--stdout", action="store_true", help="write to stdout, not LOG")
    parser.add_argument("--root", default="/", help="read /proc etc. under DIR (tests)")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the agent; the exit status (0 after SIGTERM or SIGINT)."""
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    config = config_module.load(args.config)  # after the handlers: tests wait for its messages
    if args.stdout:
        config.log = STDOUT
    writer = Writer(config.log)
    try:
        Agent(config, writer, root=args.root).run(stop, once=args.once)
    finally:
        writer.close()
    return 0
