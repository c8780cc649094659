"""The agent's line format: what a VM writes to its serial port, one record per line.

Shared by the agent (idlevm.agent, in the guest) and the host probe (idlevm.host), so it
runs on Python 3.6 and uses the standard library only. docs/agent-protocol.md has the
format in prose; docs/protocol.md the (different) format the probe publishes to OpenNebula.

    IDLEVM1 seq=17 ts=1764030000 state=idle since=1764020000 cpu=0.4 rx=120 crc=1a2b3c4d

- ASCII, one line, at most MAX_LINE bytes including the newline;
- the version word, then space-separated key=value pairs, each key once, `crc` last: the
  CRC-32 of everything before " crc=", in 8 lowercase hex digits (serial lines garble);
- no VM id: the host knows which pipe a line came from.
Everything on the line comes from the VM: decode() trusts nothing.
"""

import re
import zlib
from typing import Any, Dict, Mapping, Union

# Annotations only in forms Python 3.6 accepts (typing, no `X | Y`).
Value = Union[int, float, str]

VERSION_WORD = "IDLEVM1"
MAX_LINE = 512
# Timestamps must be real dates (2000-01-01 .. 2100-01-01): a VM-chosen 2**40 would overflow
# datetime arithmetic downstream. Shared with the published format (idlevm/one/idle.py).
EPOCH_MIN = 946684800
EPOCH_MAX = 4102444800

# key: (kind, low, high). Kinds: "int", "float", "word". Optional unless in REQUIRED.
FIELDS = {
    "seq": ("int", 0, 2**53),
    "ts": ("int", EPOCH_MIN, EPOCH_MAX),
    "state": ("word", 0, 0),
    "since": ("int", 0, EPOCH_MAX),  # 0 when busy; else a date, like ts
    "cpu": ("float", 0, 100),  # busy % of the whole VM, steal excluded
    "steal": ("float", 0, 100),
    "load": ("float", 0, 1e6),
    "disk": ("float", 0, 1e12),  # bytes/s, real disks
    "rx": ("float", 0, 1e12),  # bytes/s, loopback excluded
    "tx": ("float", 0, 1e12),
    "sess": ("int", 0, 1e6),  # interactive sessions
    "input": ("int", 0, 2**40),  # seconds since the last terminal input
    "procs": ("int", 0, 1e6),  # running processes configured as "busy"
    "gpu": ("float", 0, 100),
    "drops": ("int", 0, 2**53),  # records the agent could not write since the last one
}
REQUIRED = ("seq", "ts", "state")
STATES = ("idle", "busy")
ORDER = tuple(FIELDS)  # the order writers use; readers accept any order

# The value grammar, shared with the published format (idlevm/one/idle.py): ASCII digits
# only (int() alone would take signs, spaces, "_" and non-ASCII digits), no exponents.
PATTERNS = {
    "int": re.compile(r"[0-9]{1,16}"),
    "float": re.compile(r"[0-9]{1,16}(\.[0-9]{1,16})?"),
    "word": re.compile(r"[a-z]{1,16}"),
}
_CRC = re.compile(r"[0-9a-f]{8}\Z")


class ProtocolError(ValueError):
    """A line that does not follow the format; the message says what is wrong."""


def format_value(kind: str, value: Any) -> str:
    """Text of a value of `kind`: floats in fixed notation (no exponent), at most 6 decimals."""
    if kind == "float":
        text = f"{float(value):.6f}".rstrip("0").rstrip(".")
        return text or "0"
    return str(value)


def _check(key: str, value: Any) -> Value:
    kind, low, high = FIELDS[key]
    if kind == "word":
        if value not in STATES:
            raise ProtocolError("{}: not one of {}".format(key, ", ".join(STATES)))
        return str(value)
    number: Union[int, float] = float(value) if kind == "float" else int(value)
    if not low <= number <= high:  # also refuses nan
        raise ProtocolError(f"{key}: {value} out of range")
    return number


def encode(record: Mapping[str, Any]) -> bytes:
    """The line (bytes, newline included) for a dict of fields; raises ProtocolError."""
    for key in REQUIRED:
        if key not in record:
            raise ProtocolError(f"{key}: missing")
    parts = [VERSION_WORD]
    for key in ORDER:
        value = record.get(key)
        if value is None:
            continue
        kind = FIELDS[key][0]
        parts.append(f"{key}={format_value(kind, _check(key, value))}")
    unknown = set(record) - set(FIELDS)
    if unknown:
        raise ProtocolError("unknown fields: {}".format(", ".join(sorted(unknown))))
    body = " ".join(parts)
    line = "{} crc={:08x}\n".format(body, zlib.crc32(body.encode("ascii")) & 0xFFFFFFFF)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes exceeds {MAX_LINE}")
    return line.encode("ascii")


def decode(line: Union[bytes, str]) -> Dict[str, Value]:
    """The fields of one line (bytes or str, newline optional); raises ProtocolError."""
    if isinstance(line, str):
        try:
            line = line.encode("ascii")
        except UnicodeEncodeError:
            raise ProtocolError("not ASCII") from None
    # MAX_LINE counts the newline, whether or not the caller has cut it off already.
    if len(line) - line.endswith(b"\n") >= MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    try:
        line = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("not ASCII") from None
    line = line.rstrip("\r\n")
    body, sep, crc = line.rpartition(" crc=")
    if not sep or not _CRC.match(crc):
        raise ProtocolError("no crc at the end of the line")
    if "{:08x}".format(zlib.crc32(body.encode("ascii")) & 0xFFFFFFFF) != crc:
        raise ProtocolError("crc mismatch: the line was garbled")
    words = body.split(" ")
    if words[0] != VERSION_WORD:
        raise ProtocolError(f"unknown version {words[0][:16]!r}")
    record = {}
    for pair in words[1:]:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            raise ProtocolError(f"{pair[:32]!r}: not key=value")
        if key in record:
            raise ProtocolError(f"{key}: given twice")
        spec = FIELDS.get(key)
        if spec is None:
            continue  # a later agent's field: ignored
        if not PATTERNS[spec[0]].fullmatch(raw):
            raise ProtocolError(f"{key}: not a valid {spec[0]}")
        record[key] = _check(key, raw)
    for key in REQUIRED:
        if key not in record:
            raise ProtocolError(f"{key}: missing")
    since = int(record.get("since", 0))  # ints by now
    if since > int(record["ts"]):
        raise ProtocolError("since: later than ts")
    if record["state"] == "idle" and 0 < since < EPOCH_MIN:
        raise ProtocolError("since: out of range")  # an idle stretch starts on a real date
    return record
