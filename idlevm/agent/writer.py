"""Writes record lines to the serial port, a FIFO, a file or stdout, and never blocks.

A serial port whose host side nobody reads fills up; a blocked agent would stop measuring,
so a line that cannot go out at once is dropped and counted instead (the count travels in
the next line's `drops`). Each line goes out whole or not at all as far as we can tell: a
partial write is counted as a drop, and the next line starts with a newline that ends the
fragment (the reader discards the fragment by its CRC, and keeps the next line intact).
"""

import contextlib
import errno
import os
import stat
import sys

from . import log

try:
    import termios
except ImportError:  # not on every platform; a tty then stays as it is
    termios = None

STDOUT = "-"
WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK)


def set_raw(fd):
    """Raw 8-bit output without flow control or modem lines, so writes are not altered
    (no "\\n" to "\\r\\n"), not echoed back, and not held for a carrier that never comes."""
    if termios is None:
        return
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR)
    iflag &= ~(termios.IGNCR | termios.ICRNL | termios.IXON | termios.IXOFF)
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag &= ~(termios.CSIZE | termios.PARENB | getattr(termios, "CRTSCTS", 0))
    cflag |= termios.CS8 | termios.CLOCAL | termios.CREAD
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def open_destination(path):
    """A file descriptor for writing to `path` (a device, FIFO or regular file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = 0
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        # O_NONBLOCK: a full port or pipe gives EAGAIN instead of blocking, and opening a
        # FIFO without a reader gives ENXIO instead of waiting. O_NOCTTY: a serial port must
        # not become our controlling terminal (hangups would signal us).
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        if os.isatty(fd):
            try:
                set_raw(fd)
            except (OSError, termios.error) as error:  # still usable, maybe garbled
                log.once("raw " + path, f"{path}: cannot set raw mode ({error})")
        return fd
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class Writer:
    """Writes whole lines to one destination; counts what it could not write."""

    def __init__(self, destination):
        self.destination = destination
        self.fd = None
        self.drops = 0  # lines not written since the last line that was
        self.broken = False  # a partial line is on the wire: start the next with "\n"
        self.failing = False  # the last attempt failed (report changes, not every failure)

    def _open(self):
        if self.destination == STDOUT:
            # Not O_NONBLOCK: that flag would be shared with whoever else holds stdout.
            self.fd = sys.stdout.fileno()
        else:
            self.fd = open_destination(self.destination)

    def close(self):
        if self.fd is not None and self.destination != STDOUT:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None

    def write(self, line):
        """Write one line (bytes); True when it went out whole."""
        data = b"\n" + line if self.broken else line
        try:
            if self.fd is None:
                self._open()
            written = os.write(self.fd, data)
        except OSError as error:
            if error.errno not in WOULD_BLOCK:
                self.close()  # reopen on the next line: the reader may come back
            return self._failed(error)
        if written < len(data):
            self.broken = True
            return self._failed(OSError(errno.EAGAIN, "partial write"))
        self.broken = False
        self.drops = 0
        if self.failing:
            self.failing = False
            log.warn(f"{self.destination}: writing again")
        return True

    def _failed(self, error):
        self.drops += 1
        if not self.failing:
            self.failing = True
            text = error.strerror or str(error)
            log.warn(f"{self.destination}: cannot write ({text}); dropping lines")
        return False
