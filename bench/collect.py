"""Collection benchmark: the suspension service's cycle against the simulator.

For each pool size it measures, side by side in one run:
- bare:     OneClient fetch + parse of both pools (no database): the floor;
- collect:  a whole `collect_once` cycle on SQLite (first cycle inserts, the steady cycle
            updates every row and adds new idle samples), and its ratio to bare;
- peak RSS of each, in separate processes so they don't share a high-water mark;
- parse:    our parser against pyone's on the same infoextended XML;
- cycle:    the whole service cycle with the 20 rules of bench/rules.py (dry run: the cloud
            stays as it is between cycles): collect, evaluate, act (record), and its ratio to
            collect alone.

The simulator runs in its own process (its CPU and memory are not ours), with idle data
on every running VM. Usage: python bench/collect.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HOSTS_PER_VM = 20  # 500 hosts at 10k VMs, as the issue asks
SESSION = "oneadmin:bench"
FEED_SECONDS = 2.0


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the processes --------------------------------------------------------------------------


def serve(vms: int) -> None:
    """Simulator process: a generated cloud with idle data on every running VM."""
    from idlevm.onesim.feeder import IdleFeeder
    from idlevm.onesim.testing import Simulator, build_cloud

    cloud = build_cloud(hosts=max(1, vms // HOSTS_PER_VM), vms=vms, seed=42, auth=SESSION)
    # New records every FEED_SECONDS, like agents reporting between two cycles: each steady
    # cycle then updates every VM and appends a sample for each record.
    IdleFeeder(cloud, interval=FEED_SECONDS).start()
    sim = Simulator(cloud).start()
    print(sim.url, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    sim.stop()


def bare(url: str) -> dict[str, Any]:
    from idlevm.one.client import OneClient

    client = OneClient(url, SESSION, timeout=600)
    best, counts = float("inf"), (0, 0)
    for _ in range(3):
        started = time.perf_counter()
        hosts, vms = client.hosts(), client.vms()
        best = min(best, time.perf_counter() - started)
        counts = (len(hosts), len(vms))
        del hosts, vms  # one pool in memory at a time, as in a cycle
    return {"seconds": best, "hosts": counts[0], "vms": counts[1], "rss": maxrss_mib()}


def collect(url: str) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suspend_service.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from idlevm.inventory.collect import collect_once
    from idlevm.one.client import OneClient

    call_command("migrate", verbosity=0)
    client = OneClient(url, SESSION, timeout=600)
    timings, samples = [], []
    for _ in range(3):
        started = time.perf_counter()
        run = collect_once(client)
        timings.append(time.perf_counter() - started)
        assert run.outcome == "ok", run.message
        samples.append(run.new_samples)
        time.sleep(FEED_SECONDS * 1.5)  # let the agents "report" again
    return {
        "first": timings[0], "steady": min(timings[1:]), "rss": maxrss_mib(),
        "steady_samples": min(samples[1:]),
    }  # fmt: skip


def cycle(url: str) -> dict[str, Any]:
    """Whole cycles (collect + 20 dry-run rules), as run_cycle runs them after collection."""
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suspend_service.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from idlevm.inventory.collect import collect_once
    from idlevm.one.client import OneClient
    from idlevm.rules.cycle import run_rules
    from idlevm.rules.models import ActionRecord, Rule

    sys.path.insert(0, str(REPO / "bench"))
    from rules import RULES  # the benchmark's 20 rules

    call_command("migrate", verbosity=0)
    for i, (action, expression) in enumerate(RULES):
        Rule.objects.create(
            name=f"bench-{i + 1}",
            expression=expression,
            action=action,
            all_vms=True,
            dry_run=True,
            order=i,
            max_actions_per_cycle=10**6,
        )
    client = OneClient(url, SESSION, timeout=600)
    rows = []
    for _ in range(3):
        started = time.perf_counter()
        run = collect_once(client, finish=False)
        run = run_rules(client, run)
        rows.append(
            (
                time.perf_counter() - started,
                run.collect_seconds,
                run.evaluate_seconds,
                run.act_seconds,
                sum(run.actions.values()),
            )
        )
        time.sleep(FEED_SECONDS * 1.5)
    first, steady = rows[0], min(rows[1:])
    return {
        "first": first[0], "first_records": first[4], "steady": steady[0],
        "steady_collect": steady[1], "evaluate": steady[2], "act": steady[3],
        "steady_records": steady[4], "records": ActionRecord.objects.count(),
    }  # fmt: skip


def parse_vs_pyone(url: str) -> dict[str, Any]:
    import xmlrpc.client

    from lxml import etree
    from pyone import bindings

    from idlevm.one.parse import parse_vm_pool

    xml = xmlrpc.client.ServerProxy(url).one.vmpool.infoextended(SESSION, -2, -1, -1, -1)[1]
    data = xml.encode()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    tree = min(_timed(lambda: etree.fromstring(data, parser)) for _ in range(3))
    ours = min(_timed(lambda: sum(1 for _ in parse_vm_pool(data))) for _ in range(3))
    theirs = min(_timed(lambda: bindings.parseString(data, silence=True)) for _ in range(2))
    return {"ours": ours, "pyone": theirs, "tree": tree, "bytes": len(data)}


def write_pool(arg: str) -> dict[str, Any]:
    """`N:FILE`: write the infoextended XML of a generated N-VM pool to FILE."""
    from idlevm.onesim.testing import build_cloud

    vms, path = arg.split(":", 1)
    cloud = build_cloud(hosts=max(1, int(vms) // HOSTS_PER_VM), vms=int(vms), seed=42)
    Path(path).write_text(cloud.vm_pool_xml(-2, -1, -1, -1, True))
    return {}


def stream_memory(vms: str) -> dict[str, Any]:
    """Peak RSS while parse_vm_pool streams a whole pool given as one XML document.

    The pool is generated in another process: building it would set a peak of its own.
    """
    from idlevm.one.parse import parse_vm_pool

    with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
        child("write-pool", f"{vms}:{tmp.name}")
        data = Path(tmp.name).read_bytes()
    before = maxrss_mib()
    started = time.perf_counter()
    count = sum(1 for _ in parse_vm_pool(data))
    seconds = time.perf_counter() - started
    return {
        "vms": count, "mib": len(data) / 2**20, "seconds": seconds, "before": before,
        "growth": maxrss_mib() - before,
    }  # fmt: skip


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --- the driver -----------------------------------------------------------------------------


def child(mode: str, url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, f"--{mode}", url], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(vms: int, with_pyone: bool) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(vms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        row: dict[str, Any] = {"size": vms, "bare": child("bare", url)}
        row["collect"] = child("collect", url)
        row["cycle"] = child("cycle", url)
        if with_pyone:
            row["parse"] = child("parse", url)
        return row
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=60)


def report(rows: list[dict[str, Any]], stream: dict[str, Any] | None) -> str:
    lines = [
        "| VMs in pool | hosts | fetch+parse (bare) | collect, first cycle | collect, steady "
        "cycle (new samples) | steady / bare | peak RSS bare | peak RSS collect | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, c = r["bare"], r["collect"]
        lines.append(
            f"| {b['vms']} | {b['hosts']} | {b['seconds']:.2f} s | {c['first']:.2f} s | "
            f"{c['steady']:.2f} s ({c['steady_samples']}) | {c['steady'] / b['seconds']:.2f}x | "
            f"{b['rss']:.0f} MiB | "
            f"{c['rss']:.0f} MiB | {c['rss'] / b['rss']:.2f}x |"
        )
    lines += ["", "| VMs | whole cycle, first (records) | whole cycle, steady (records) | of "
              "which collect | evaluate 20 rules | act | steady cycle / steady collect |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        c, y = r["collect"], r["cycle"]
        lines.append(
            f"| {r['bare']['vms']} | {y['first']:.2f} s ({y['first_records']}) | "
            f"{y['steady']:.2f} s ({y['steady_records']}) | {y['steady_collect']:.2f} s | "
            f"{y['evaluate']:.3f} s | {y['act']:.3f} s | {y['steady'] / c['steady']:.2f}x |"
        )
    lines += ["", "| VMs | XML size | libxml2 tree alone | idlevm parse | pyone parse "
              "| pyone / idlevm |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "parse" in r:
            p = r["parse"]
            lines.append(
                f"| {r['size']} | {p['bytes'] / 2**20:.1f} MiB | {p['tree']:.3f} s | "
                f"{p['ours']:.3f} s | "
                f"{p['pyone']:.3f} s | {p['pyone'] / p['ours']:.1f}x |"
            )
    if stream:
        lines += [
            "",
            "| VMs | XML size | streaming parse | peak RSS before | growth while parsing |",
            "|---|---|---|---|---|",
            f"| {stream['vms']} | {stream['mib']:.0f} MiB | {stream['seconds']:.1f} s | "
            f"{stream['before']:.0f} MiB | {stream['growth']:.0f} MiB |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--pyone-max", type=int, default=10000, help="largest pool for pyone")
    parser.add_argument("--stream-size", type=int, default=100_000, help="VMs for streaming")
    for mode in ("serve", "bare", "collect", "cycle", "parse", "stream-memory", "write-pool"):
        parser.add_argument(f"--{mode}", metavar="ARG")
    args = parser.parse_args()
    if args.serve:
        return serve(int(args.serve))
    modes = (("bare", bare), ("collect", collect), ("cycle", cycle), ("parse", parse_vs_pyone),
             ("stream_memory", stream_memory), ("write_pool", write_pool))  # fmt: skip
    for mode, fn in modes:
        if getattr(args, mode):
            print(json.dumps(fn(getattr(args, mode))))
            return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(size, with_pyone=size <= args.pyone_max))
        print(f"measured {size} VMs", file=sys.stderr)
    stream = child("stream-memory", str(args.stream_size)) if args.stream_size else None
    print(report(rows, stream))


if __name__ == "__main__":
    main()
