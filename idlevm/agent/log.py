"""Messages to standard error (systemd's journal), some of them only once.

A broken collector or an unreachable port would otherwise repeat the same message every
interval for days; `once` remembers keys in a set bounded by the (fixed) set of callers.
"""

import sys

_seen = set()


def warn(message):
    """Print one message; never raises (stderr may be closed under some init systems)."""
    try:
        sys.stderr.write(f"idlevm-agent: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def once(key, message):
    """Print the message the first time `key` is seen; True when it was printed."""
    if key in _seen:
        return False
    _seen.add(key)
    warn(message)
    return True


def forget(key):
    """Let `key` be reported again (its problem went away)."""
    _seen.discard(key)
