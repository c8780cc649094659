"""The published idle format (docs/protocol.md): parsing, formatting, hostile input."""

from __future__ import annotations

import random
import string

import pytest

from idlevm.one.idle import (
    format_host_idle,
    format_monitoring_idle,
    newest,
    parse_host_idle,
    parse_monitoring_idle,
)
from idlevm.one.records import IdleRecord

DOC_EXAMPLE = (
    "1;42:seq=17,ts=1764030000,rcv=1764030002,state=idle,since=1764020000,cpu=0.4,rx=120;"
    "43:seq=3,ts=1764030000,rcv=1764030001,state=busy,since=0"
)
GOOD = "seq=1,ts=1764000100,rcv=1764000101,state=busy"
MON = {
    "IDLE_VERSION": "1",
    "IDLE_SEQ": "17",
    "IDLE_TIME": "1764030000",
    "IDLE_RECEIVED": "1764030002",
    "IDLE_STATE": "idle",
    "IDLE_SINCE": "1764020000",
    "IDLE_CPU": "0.4",
    "IDLE_NET_RX": "120",
}


def rec(**kw: object) -> IdleRecord:
    base: dict[str, object] = {"seq": 1, "time": 1764000100, "received": 1764000101, "idle": False}
    base.update(kw)
    return IdleRecord(**base)  # type: ignore[arg-type]


def test_host_doc_example() -> None:
    records, problems = parse_host_idle(DOC_EXAMPLE, [42, 43])
    assert problems == []
    r42 = records[42]
    assert (r42.seq, r42.time, r42.received, r42.idle) == (17, 1764030000, 1764030002, True)
    assert (r42.idle_since, r42.cpu, r42.net_rx, r42.source) == (1764020000, 0.4, 120.0, "host")
    assert records[43].idle is False and records[43].idle_since is None


def test_monitoring_doc_example() -> None:
    record, problems = parse_monitoring_idle({**MON, "CPU": "3", "IDLE_FUTURE": "x"}, vm_id=42)
    assert problems == []
    assert record is not None
    assert (record.seq, record.idle, record.idle_since, record.cpu) == (17, True, 1764020000, 0.4)
    assert record.source == "vm"


def test_monitoring_without_idle_is_none() -> None:
    assert parse_monitoring_idle({"CPU": "1", "MEMORY": "2"}) == (None, [])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("IDLE_SEQ", "-1"), ("IDLE_SEQ", "1e3"), ("IDLE_SEQ", " 1"),
        ("IDLE_SEQ", "12345678901234567"),
        ("IDLE_CPU", "100.1"), ("IDLE_CPU", "nan"), ("IDLE_CPU", "inf"), ("IDLE_CPU", ".5"),
        ("IDLE_CPU", "5."), ("IDLE_CPU", "1e1"), ("IDLE_CPU", "+1"), ("IDLE_STATE", "IDLE"),
        ("IDLE_STATE", "sleepy"), ("IDLE_VERSION", "2"), ("IDLE_TIME", str(2**40 + 1)),
        ("IDLE_LOAD", "1000000.5"), ("IDLE_SESSIONS", "1000001"), ("IDLE_SINCE", "1764030001"),
        ("IDLE_CPU", "٣"),  # a non-ASCII digit: int()/float() would accept it
    ],
)  # fmt: skip
def test_monitoring_bad_value_rejects_whole_record(key: str, value: str) -> None:
    record, problems = parse_monitoring_idle({**MON, key: value}, vm_id=42)
    assert record is None
    assert len(problems) == 1
    reason = problems[0].reason
    assert problems[0].vm_id == 42 and "malformed idle data" in reason and "VM 42" in reason


@pytest.mark.parametrize("missing", ["IDLE_VERSION", "IDLE_SEQ", "IDLE_TIME", "IDLE_RECEIVED"])
@pytest.mark.parametrize("how", ["left out", "empty"])
def test_monitoring_required(missing: str, how: str) -> None:
    attrs = {k: v for k, v in MON.items() if k != missing}
    if how == "empty":
        attrs[missing] = ""
    record, problems = parse_monitoring_idle(attrs, vm_id=5)
    assert record is None and "missing" in problems[0].reason


def test_monitoring_empty_value_means_absent() -> None:
    # The probe writes every name, empty when absent: oned merges MONITORING.
    record, problems = parse_monitoring_idle({**MON, "IDLE_CPU": "", "IDLE_GPU": ""}, vm_id=5)
    assert problems == [] and record is not None
    assert (record.cpu, record.gpu) == (None, None)


def test_bounds_inclusive() -> None:
    attrs = {**MON, "IDLE_CPU": "100", "IDLE_SEQ": str(2**53), "IDLE_DISK": "1000000000000"}
    record, problems = parse_monitoring_idle(attrs)
    assert problems == [] and record is not None and record.seq == 2**53


def test_host_bad_value_names_vm_and_key() -> None:
    records, problems = parse_host_idle(f"1;42:{GOOD},cpu=101;43:{GOOD}", [42, 43])
    assert list(records) == [43]
    assert problems[0].vm_id == 42 and "cpu" in problems[0].reason


def test_host_duplicate_rejected_both_times() -> None:
    records, problems = parse_host_idle(f"1;42:{GOOD};43:{GOOD};42:{GOOD}", [42, 43])
    assert list(records) == [43]
    assert [p.vm_id for p in problems] == [42, 42]


def test_host_vm_not_on_host() -> None:
    records, problems = parse_host_idle(f"1;42:{GOOD};99:{GOOD}", [42])
    assert list(records) == [42]
    assert problems[0].vm_id == 99 and problems[0].wrong_host


def test_host_unknown_vms_accepted_when_host_lists_none() -> None:
    records, _ = parse_host_idle(f"1;42:{GOOD}", None)
    assert list(records) == [42]


def test_host_unknown_keys_ignored_but_v_and_twice_rejected() -> None:
    records, problems = parse_host_idle(
        f"1;1:{GOOD},future_key=zz.9;2:{GOOD},v=1;3:{GOOD},seq=2;4:{GOOD},novalue", range(5)
    )
    assert list(records) == [1]
    assert sorted(p.vm_id for p in problems if p.vm_id is not None) == [2, 3, 4]


@pytest.mark.parametrize("value", ["", "2;1:seq=1", "x", "1.0;1:seq=1", ";1:" + GOOD])
def test_host_bad_version_rejects_all(value: str) -> None:
    records, problems = parse_host_idle(value, [1])
    assert records == {} and len(problems) == 1


def test_host_version_only_and_trailing_separator() -> None:
    assert parse_host_idle("1", []) == ({}, [])
    records, problems = parse_host_idle(f"1;1:{GOOD};", [1])
    assert list(records) == [1] and problems == []


def test_host_bad_characters_reject_only_that_record() -> None:
    records, problems = parse_host_idle(f'1;1:{GOOD},x="q";2:{GOOD}', [1, 2])
    assert list(records) == [2] and problems[0].vm_id == 1


def test_host_record_over_512_bytes() -> None:
    long = f"1:{GOOD},pad=" + "a" * 600
    records, problems = parse_host_idle(f"1;{long};2:{GOOD}", [1, 2])
    assert list(records) == [2] and "512" in problems[0].reason


def test_host_more_than_1000_records() -> None:
    value = "1;" + ";".join(f"{i}:{GOOD}" for i in range(1005))
    records, problems = parse_host_idle(value, range(2000))
    assert len(records) == 1000 and max(records) == 999
    assert len(problems) == 1 and "5 records" in problems[0].reason


def test_host_over_256_kib() -> None:
    pad = ",pad=" + "a" * 400
    value = "1;" + ";".join(f"{i}:{GOOD}{pad}" for i in range(900))
    assert len(value) > 256 * 1024
    records, problems = parse_host_idle(value, range(900))
    assert 0 < len(records) < 900 and sorted(records) == list(range(len(records)))
    assert "rejected" in problems[0].reason


def test_host_huge_attribute_is_fast_and_bounded() -> None:
    value = "1;" + ";".join(f"{i}:{GOOD}" for i in range(200_000))
    records, problems = parse_host_idle(value, None)
    assert len(records) == 1000 and len(problems) == 1


def test_newest_rule() -> None:
    vm_old, host_new = (
        rec(received=1764000100, source="vm"),
        rec(received=1764000101, source="host"),
    )
    assert newest(vm_old, host_new) is host_new
    vm_seq, host_seq = rec(seq=5, source="vm"), rec(seq=4, source="host")
    assert newest(vm_seq, host_seq) is vm_seq
    assert newest(rec(seq=4, source="vm"), rec(seq=5, source="host")).source == "host"
    tie_vm, tie_host = rec(source="vm"), rec(source="host")
    assert newest(tie_vm, tie_host) is tie_vm
    assert newest(None, tie_host) is tie_host and newest(tie_vm, None) is tie_vm
    assert newest(None, None) is None


FULL = IdleRecord(
    seq=9, time=1764001000, received=1764001002, idle=True, idle_since=1764000400, cpu=0.25,
    steal=1.5,
    load=0.01, disk=12345.5, net_rx=1e12, net_tx=0.000001, sessions=2, input_age=3600,
    busy_procs=0, gpu=99.5, rejected=3,
)  # fmt: skip


def test_round_trip_host() -> None:
    busy = rec(seq=3, cpu=50.0)
    text = format_host_idle({7: FULL, 8: busy})
    assert text.startswith("1;7:seq=9,")
    records, problems = parse_host_idle(text, [7, 8])
    assert problems == []
    assert records[7] == FULL.__class__(**{**_fields(FULL), "source": "host"})
    assert records[8] == busy.__class__(**{**_fields(busy), "source": "host"})


def test_round_trip_monitoring() -> None:
    attrs = format_monitoring_idle(FULL)
    assert all(k.startswith("IDLE_") for k in attrs) and attrs["IDLE_VERSION"] == "1"
    record, problems = parse_monitoring_idle(attrs)
    assert problems == [] and record == FULL


def test_format_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="cpu"):
        format_monitoring_idle(rec(cpu=150.0))
    with pytest.raises(ValueError):
        format_host_idle({1: rec(cpu=float("nan"))})
    with pytest.raises(ValueError):
        format_host_idle({-1: rec()})


def _fields(r: IdleRecord) -> dict[str, object]:
    return {name: getattr(r, name) for name in r.__slots__}  # type: ignore[attr-defined]


ALPHABET = string.printable + "0123456789;:,=._" * 8 + "\x00\u2603\u0663"


@pytest.mark.parametrize("seed", range(20))
def test_fuzz_never_raises(seed: int) -> None:
    rnd = random.Random(seed)
    good = format_host_idle({1: FULL, 2: rec()})
    for _ in range(300):
        if rnd.random() < 0.5:  # mutate a valid value: the interesting cases
            chars = list(good)
            for _ in range(rnd.randint(1, 5)):
                chars[rnd.randrange(len(chars))] = rnd.choice(ALPHABET)
            value = "".join(chars)
        else:
            value = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 200)))
        records, problems = parse_host_idle(value, [1, 2])
        assert all(isinstance(r, IdleRecord) for r in records.values())
        assert all(p.reason for p in problems)
        attrs = {k: value[: rnd.randint(0, 40)] for k in rnd.sample(sorted(MON), 3)}
        record, problems = parse_monitoring_idle({**MON, **attrs})
        assert (record is None) == bool(problems)


def test_non_string_input_does_not_raise() -> None:
    assert parse_host_idle(None, [1])[0] == {}  # type: ignore[arg-type]
    record, problems = parse_monitoring_idle({**MON, "IDLE_SEQ": 5})  # type: ignore[dict-item]
    assert record is None and problems


@pytest.mark.parametrize(
    "pairs",
    [
        "seq=1,ts=1099511627776,rcv=1764000000,state=busy",  # 2**40: past year 2100
        "seq=1,ts=1764000000,rcv=0,state=busy",
        "seq=1,ts=1764000000,rcv=1764000000,state=idle,since=1",  # idle since 1970
    ],
)
def test_timestamps_outside_real_dates_are_rejected(pairs: str) -> None:
    records, problems = parse_host_idle(f"1;5:{pairs}")
    assert records == {} and len(problems) == 1 and problems[0].vm_id == 5


def test_a_busy_record_is_accepted_whatever_its_since() -> None:
    records, problems = parse_host_idle("1;5:seq=1,ts=1764000000,rcv=1764000000,state=busy,since=5")
    assert problems == [] and records[5].idle_since is None
