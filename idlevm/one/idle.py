"""The published idle data format (docs/protocol.md): parse and format.

Everything parsed here originates in a VM whose owner controls it, so the parsers never raise:
every problem becomes an IdleProblem, and a record with any bad value is dropped whole.
The formatters are the inverse, for the host probe, the simulator and tests; they raise
ValueError on records that would not parse back (a bug in the caller, not hostile input).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from idlevm.one.records import IdleProblem, IdleRecord
from idlevm.protocol import EPOCH_MAX, EPOCH_MIN, PATTERNS, format_value

VERSION = 1
MAX_RECORD_BYTES = 512
MAX_RECORDS = 1000
MAX_ATTRIBUTE_BYTES = 256 * 1024

_INT = PATTERNS["int"]
# Floats: the doc gives no digit limit; 16 digits either side is far past any bound and keeps
# the work per value constant (decision reported to the protocol owner).
_FLOAT = PATTERNS["float"]
_WORD = PATTERNS["word"]
_HOST_CHARS = re.compile(r"[0-9a-z.,;:=_]*")
_NON_EMPTY_SEGMENT = re.compile(r"[^;]+")


@dataclass(frozen=True, slots=True)
class _Field:
    key: str  # short key (classic path)
    name: str  # MONITORING name
    kind: str  # "int", "float" or "word"
    low: float
    high: float


_FIELDS = (
    _Field("v", "IDLE_VERSION", "int", 1, 1),
    _Field("seq", "IDLE_SEQ", "int", 0, 2**53),
    _Field("ts", "IDLE_TIME", "int", EPOCH_MIN, EPOCH_MAX),
    _Field("rcv", "IDLE_RECEIVED", "int", EPOCH_MIN, EPOCH_MAX),
    _Field("state", "IDLE_STATE", "word", 0, 0),
    _Field("since", "IDLE_SINCE", "int", 0, EPOCH_MAX),
    _Field("cpu", "IDLE_CPU", "float", 0, 100),
    _Field("steal", "IDLE_STEAL", "float", 0, 100),
    _Field("load", "IDLE_LOAD", "float", 0, 1e6),
    _Field("disk", "IDLE_DISK", "float", 0, 1e12),
    _Field("rx", "IDLE_NET_RX", "float", 0, 1e12),
    _Field("tx", "IDLE_NET_TX", "float", 0, 1e12),
    _Field("sess", "IDLE_SESSIONS", "int", 0, 1e6),
    _Field("input", "IDLE_INPUT_AGE", "int", 0, 2**40),
    _Field("procs", "IDLE_BUSY_PROCS", "int", 0, 1e6),
    _Field("gpu", "IDLE_GPU", "float", 0, 100),
    _Field("rej", "IDLE_REJECTED", "int", 0, 2**53),
)
_BY_KEY = {f.key: f for f in _FIELDS}
_BY_NAME = {f.name: f for f in _FIELDS}
MONITORING_NAMES = frozenset(_BY_NAME)
_REQUIRED = ("v", "seq", "ts", "rcv", "state")
# IdleRecord attribute for each optional numeric key.
_ATTRS = {
    "cpu": "cpu", "steal": "steal", "load": "load", "disk": "disk", "rx": "net_rx",
    "tx": "net_tx", "sess": "sessions", "input": "input_age", "procs": "busy_procs",
    "gpu": "gpu", "rej": "rejected",
}  # fmt: skip

Value = int | float | str


class _Bad(Exception):
    """A record is malformed; the message names the key (the caller adds the VM)."""


def _label(key: str, source: str) -> str:
    """How an error names a field: as it is written on that path (cpu or IDLE_CPU)."""
    return _BY_KEY[key].name if source == "vm" else key


def _convert(spec: _Field, raw: str, source: str) -> Value:
    label = _label(spec.key, source)
    if spec.kind == "word":
        if not _WORD.fullmatch(raw) or raw not in ("idle", "busy"):
            raise _Bad(f"{label}: not 'idle' or 'busy'")
        return raw
    pattern = _INT if spec.kind == "int" else _FLOAT
    if not pattern.fullmatch(raw):
        raise _Bad(f"{label}: not a valid {spec.kind}")
    value: int | float = int(raw) if spec.kind == "int" else float(raw)
    if not spec.low <= value <= spec.high:
        raise _Bad(f"{label}: out of range")
    return value


def _build(values: Mapping[str, Value], source: str) -> IdleRecord:
    """An IdleRecord from converted values (short keys); raises _Bad on inconsistencies."""
    for key in _REQUIRED:
        if key not in values:
            raise _Bad(f"{_label(key, source)}: missing")
    idle = values["state"] == "idle"
    since = values.get("since")
    ts = int(values["ts"])
    if since is not None and int(since) > ts:
        raise _Bad(f"{_label('since', source)}: later than {_label('ts', source)}")
    if idle and since and int(since) < EPOCH_MIN:
        raise _Bad(f"{_label('since', source)}: out of range")
    extra = {_ATTRS[k]: v for k, v in values.items() if k in _ATTRS}
    return IdleRecord(
        seq=int(values["seq"]),
        time=ts,
        received=int(values["rcv"]),
        idle=idle,
        # 0 means "no idle stretch"; a busy VM has none whatever it claims.
        idle_since=int(since) if idle and since else None,
        source=source,
        **extra,  # type: ignore[arg-type]
    )


def _malformed(vm_id: int | None, detail: str) -> IdleProblem:
    who = f"VM {vm_id}" if vm_id is not None else "unknown VM"
    return IdleProblem(vm_id, f"malformed idle data for {who}: {detail}")


# ---------------------------------------------------------------- current path: MONITORING


def parse_monitoring_idle(
    attrs: Mapping[str, str], vm_id: int | None = None
) -> tuple[IdleRecord | None, list[IdleProblem]]:
    """The record in a VM's MONITORING IDLE_* attributes; (None, []) when there is none."""
    try:
        values: dict[str, Value] = {}
        present = False
        for name, raw in attrs.items():
            if not name.startswith("IDLE_"):
                continue
            present = True
            spec = _BY_NAME.get(name)
            if spec is None:  # unknown IDLE_* names are ignored (later versions)
                continue
            if not isinstance(raw, str):
                raise _Bad(f"{spec.name}: value is not text")
            if raw == "":
                # Absent: the probe writes every name, empty when the agent did not send it,
                # because oned merges MONITORING and would keep an older record's value.
                continue
            values[spec.key] = _convert(spec, raw, "vm")
        if not present:
            return None, []
        return _build(values, "vm"), []
    except _Bad as exc:
        return None, [_malformed(vm_id, str(exc))]


def format_monitoring_idle(rec: IdleRecord) -> dict[str, str]:
    """The IDLE_* attributes a vm/monitor probe prints for rec."""
    return {_BY_KEY[key].name: value for key, value in _pairs(rec)}


# ---------------------------------------------------------------- classic path: host IDLE


def parse_host_idle(
    value: str, host_vm_ids: Collection[int] | None = None
) -> tuple[dict[int, IdleRecord], list[IdleProblem]]:
    """The records of a host's TEMPLATE/IDLE, by VM id.

    host_vm_ids: the VMs OpenNebula places on this host (HOST/VMS); records for other VMs
    are reported and dropped. None means unknown (3.x hosts have no VMS element): then the
    caller must only pair a record with a VM whose last HISTORY names this host.
    """
    if not isinstance(value, str):
        return {}, [_malformed(None, "IDLE is not text")]
    problems: list[IdleProblem] = []
    head = value[:MAX_ATTRIBUTE_BYTES].partition(";")[0]
    if head != str(VERSION):
        return {}, [_malformed(None, f"IDLE version {head[:16]!r} is not {VERSION}")]
    segments, overflow = _split_bounded(value, len(head) + 1)
    if overflow:
        problems.append(_malformed(None, f"IDLE over its bounds: {overflow} records rejected"))
    parsed = [_parse_segment(seg) for seg in segments]
    counts: dict[int, int] = {}
    for vm_id, _ in parsed:
        if vm_id is not None:
            counts[vm_id] = counts.get(vm_id, 0) + 1
    records: dict[int, IdleRecord] = {}
    for vm_id, result in parsed:
        if vm_id is not None and counts[vm_id] > 1:
            problems.append(_malformed(vm_id, "VM id appears more than once"))
        elif isinstance(result, IdleProblem):
            problems.append(result)
        elif vm_id is not None and host_vm_ids is not None and vm_id not in host_vm_ids:
            reason = f"idle data for VM {vm_id}, which OpenNebula does not place on this host"
            problems.append(IdleProblem(vm_id, reason, wrong_host=True))
        elif vm_id is not None:
            records[vm_id] = result
    return records, problems


def _split_bounded(value: str, start: int) -> tuple[list[str], int]:
    """Non-empty records after the version prefix, and how many lie past the bounds.

    A record that ends past MAX_ATTRIBUTE_BYTES, or comes after the MAX_RECORDS-th, is
    rejected; earlier ones stay good. Empty segments (e.g. a trailing ';') are skipped.
    """
    kept: list[str] = []
    overflow = 0
    pos = start
    length = len(value)
    while pos < length:
        end = value.find(";", pos)
        end = length if end < 0 else end
        if end > pos:
            if len(kept) < MAX_RECORDS and end <= MAX_ATTRIBUTE_BYTES:
                kept.append(value[pos:end])
            else:
                # Past the bounds: count the rest without splitting a possibly huge string.
                return kept, overflow + 1 + _count_segments(value, end + 1)
        pos = end + 1
    return kept, overflow


def _count_segments(value: str, start: int) -> int:
    """Non-empty segments after `start`, counted without building them (O(1) memory)."""
    return sum(1 for _ in _NON_EMPTY_SEGMENT.finditer(value, start))


def _parse_segment(seg: str) -> tuple[int | None, IdleRecord | IdleProblem]:
    raw_id, sep, body = seg.partition(":")
    vm_id = int(raw_id) if _INT.fullmatch(raw_id) else None
    try:
        if vm_id is None or not sep:
            raise _Bad("record does not start with '<vm id>:'")
        if len(seg.encode("utf-8", "replace")) > MAX_RECORD_BYTES:
            raise _Bad(f"record longer than {MAX_RECORD_BYTES} bytes")
        if not _HOST_CHARS.fullmatch(seg):
            raise _Bad("record has characters outside [0-9a-z.,;:=_]")
        return vm_id, _build(_segment_values(body), "host")
    except _Bad as exc:
        return vm_id, _malformed(vm_id, str(exc))


def _segment_values(body: str) -> dict[str, Value]:
    values: dict[str, Value] = {"v": VERSION}  # the prefix gave the version
    seen: set[str] = set()
    for pair in body.split(","):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise _Bad(f"{pair[:32]!r}: not key=value")
        if key in seen:
            raise _Bad(f"{key}: given twice")
        seen.add(key)
        if key == "v":
            raise _Bad("v: not allowed inside a record (the prefix gives it)")
        spec = _BY_KEY.get(key)
        if spec is not None:  # unknown keys are ignored (later versions)
            values[key] = _convert(spec, raw, "host")
    return values


def format_host_idle(records: Mapping[int, IdleRecord]) -> str:
    """The host TEMPLATE IDLE value for records (by VM id)."""
    if len(records) > MAX_RECORDS:
        raise ValueError(f"more than {MAX_RECORDS} idle records")
    parts = [str(VERSION)]
    for vm_id in sorted(records):
        if isinstance(vm_id, bool) or not isinstance(vm_id, int) or vm_id < 0:
            raise ValueError(f"bad VM id {vm_id!r}")
        body = ",".join(f"{k}={v}" for k, v in _pairs(records[vm_id]) if k != "v")
        record = f"{vm_id}:{body}"
        if len(record) > MAX_RECORD_BYTES:
            raise ValueError(f"idle record for VM {vm_id} longer than {MAX_RECORD_BYTES} bytes")
        parts.append(record)
    value = ";".join(parts)
    if len(value) > MAX_ATTRIBUTE_BYTES:
        raise ValueError(f"IDLE longer than {MAX_ATTRIBUTE_BYTES} bytes")
    return value


# ---------------------------------------------------------------- shared formatting


def _pairs(rec: IdleRecord) -> list[tuple[str, str]]:
    """(short key, text) for every field of rec that is set, validated against the bounds."""
    since = rec.idle_since if rec.idle and rec.idle_since is not None else 0
    pairs: list[tuple[str, Value]] = [
        ("v", VERSION), ("seq", rec.seq), ("ts", rec.time), ("rcv", rec.received),
        ("state", "idle" if rec.idle else "busy"), ("since", since),
    ]  # fmt: skip
    for key, attr in _ATTRS.items():
        value = getattr(rec, attr)
        if value is not None and not (key == "rej" and value == 0):
            pairs.append((key, value))
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        spec = _BY_KEY[key]
        text = _format_value(spec, value)
        if not _valid(spec, text):
            raise ValueError(f"idle field {key}={value!r} is outside the published format")
        out.append((key, text))
    return out


def _format_value(spec: _Field, value: Value) -> str:
    return format_value(spec.kind, value)  # the agent line's rule: same grammar


def _valid(spec: _Field, text: str) -> bool:
    try:
        _convert(spec, text, "host")
    except _Bad:
        return False
    return True


# ---------------------------------------------------------------- choosing


def newest(vm_record: IdleRecord | None, host_record: IdleRecord | None) -> IdleRecord | None:
    """The record to use when both paths have one: greater rcv, then seq, then MONITORING."""
    if vm_record is None:
        return host_record
    if host_record is None:
        return vm_record
    if (host_record.received, host_record.seq) > (vm_record.received, vm_record.seq):
        return host_record
    return vm_record
