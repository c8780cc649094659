"""The agent's serial line format (idlevm/protocol.py): round trips, and hostile lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from idlevm import protocol

REPO = Path(__file__).resolve().parents[2]
GOOD = {"seq": 17, "ts": 1764030000, "state": "idle", "since": 1764020000, "cpu": 0.4,
        "rx": 120.0, "tx": 0.000001, "sess": 0, "drops": 2}  # fmt: skip


def test_a_record_round_trips_and_fits_one_short_ascii_line():
    line = protocol.encode(GOOD)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= protocol.MAX_LINE
    assert line.startswith(b"IDLEVM1 seq=17 ts=1764030000 state=idle ")
    decoded = protocol.decode(line)
    assert decoded == {**GOOD, "tx": 0.000001}


def test_every_field_at_its_largest_still_fits():
    record = {"seq": 2**53, "ts": 4102444800, "state": "busy", "since": 4102444800}
    for key, (kind, _low, high) in protocol.FIELDS.items():
        if key not in record:
            record[key] = high if kind != "float" else high - 0.123456
    assert len(protocol.encode(record)) <= protocol.MAX_LINE


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda line: line.replace(b"cpu=0.4", b"cpu=0.5"), "crc mismatch"),
        (lambda line: line[:-14] + b"\n", "no crc"),
        (lambda line: line.replace(b"IDLEVM1", b"IDLEVM9"), "crc mismatch"),
        (lambda line: b"x" * 600, "longer than"),
        (lambda line: "IDLEVM1 é".encode(), "not ASCII"),
    ],
)  # fmt: skip
def test_garbled_or_hostile_lines_are_refused_with_a_reason(mangle, reason):
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(mangle(protocol.encode(GOOD)))


def signed(body: str) -> str:
    import zlib

    return f"{body} crc={zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}\n"


@pytest.mark.parametrize(
    "body, reason",
    [
        ("IDLEVM1 seq=1 ts=1764030000", "state: missing"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle state=busy", "given twice"),
        ("IDLEVM1 seq=1 ts=1764030000 state=maybe", "state"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle cpu=1e9", "cpu: not a valid float"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle cpu=101", "out of range"),
        ("IDLEVM1 seq=1 ts=1 state=idle", "ts"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle since=1764030001", "later than ts"),
        ("IDLEVM1 seq=-1 ts=1764030000 state=idle", "seq"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle junk", "not key=value"),
        ("IDLEVM1 seq=1 ts=1764030000 state=idle since=5", "since: out of range"),
    ],
)  # fmt: skip
def test_well_signed_but_invalid_records_are_refused(body, reason):
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode(signed(body))


def test_a_busy_line_may_carry_any_since():
    assert protocol.decode(signed("IDLEVM1 seq=1 ts=1764030000 state=busy since=5"))["since"] == 5


def test_unknown_fields_of_a_later_agent_are_ignored():
    assert protocol.decode(signed("IDLEVM1 seq=1 ts=1764030000 state=busy newthing=7")) == {
        "seq": 1, "ts": 1764030000, "state": "busy",
    }  # fmt: skip


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(protocol.ProtocolError, match="missing"):
        protocol.encode({"seq": 1, "ts": 1764030000})
    with pytest.raises(protocol.ProtocolError, match="unknown fields"):
        protocol.encode({**GOOD, "vm_id": 42})
    with pytest.raises(protocol.ProtocolError, match="out of range"):
        protocol.encode({**GOOD, "cpu": float("nan")})


def test_the_protocol_module_runs_on_python_3_6():
    pytest.importorskip("vermin")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "vermin"), "--no-tips", "-t=3.6-", "--violations",
         str(REPO / "idlevm" / "protocol.py")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
