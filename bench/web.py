"""Console benchmark: server time of the console's pages with 10k VMs and 1M idle samples.

Builds a scratch database (a SQLite file in a temporary directory; with DATABASE_URL set to
PostgreSQL, a database `<name>_webbench` created on that server and dropped at the end):
10,000 VMs (bench/rules.py's mix: 80% running, some without or with stale idle data, 3%
exempt), 500 hosts, 1,000,000 IdleSample rows (400 VMs with a full week at one sample per
5 minutes, the others about 20 recent samples each), a day of cycles, action records and
open errors. Then Django's test Client, logged in as a plain viewer, requests each page:
median and p95 of the server time (request to response, in process: middleware, views,
queries, templates), DEBUG off as in production. Side by side, a bare cost in the same run:
the raw SQL a page cannot avoid (count + one page of rows, a VM's samples), so the ratios
say what the console adds. Usage:

    python bench/web.py [--vms 10000] [--samples 1000000] [--runs 30] [--index-experiment]
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEED = 42
HOSTS = 500
FULL_HISTORY_VMS = 400  # a week at one sample per 5 minutes each
STEP = 300  # seconds between samples, as the service collects every 5 minutes
WARMUP = 3
TARGET_LIST_MS = 100.0

# --- the scratch database -------------------------------------------------------------------


def scratch_database() -> Callable[[], None]:
    """Point DATABASE_URL at an empty scratch database; returns what drops it."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urlsplit(url)
        name = f"{parts.path.lstrip('/') or 'idlevm'}_webbench"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))

        def drop() -> None:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')

        return drop
    directory = tempfile.mkdtemp(prefix="idlevm-web-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{directory}/web-bench.sqlite3"
    return lambda: shutil.rmtree(directory, ignore_errors=True)


def setup_django() -> None:
    atexit.register(scratch_database())
    # Production settings: no query log, cached templates.
    os.environ["DEBUG"] = "0"
    os.environ["SECRET_KEY"] = "bench-web-" + "x" * 40
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suspend_service.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bench_rules_module() -> Any:
    """bench/rules.py, for its VM mix and its 20 rules (one source for both benchmarks)."""
    spec = importlib.util.spec_from_file_location("bench_rules", REPO / "bench" / "rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the data -------------------------------------------------------------------------------

MONITORING = {f"ATTR_{i}": "x" * 12 for i in range(20)}  # what oned adds: rows as wide as real


def build(vm_count: int, sample_count: int, now: datetime) -> dict[str, Any]:
    """Fill the database; returns what the measurements need (ids, names, timings)."""
    from django.db import connection, transaction

    from idlevm.inventory.models import Host, VirtualMachine
    from idlevm.rules.models import Rule

    started = time.perf_counter()
    bench_rules = bench_rules_module()
    vms = bench_rules.build_vms(vm_count, now)
    for vm in vms:
        vm.monitoring = {**MONITORING, "CPU": f"{vm.cpu_pct or 0:.1f}"}
        vm.last_seen_run = 288
    with_data = [vm for vm in vms if vm.idle_received is not None]
    history = with_data[:FULL_HISTORY_VMS]
    with transaction.atomic():
        Host.objects.bulk_create(host(i, now) for i in range(HOSTS))
        VirtualMachine.objects.bulk_create(vms, batch_size=1000)
        rules = [
            Rule.objects.create(name=f"bench-{i + 1}", expression=expression, action=action,
                                all_vms=True, dry_run=True, order=i)
            for i, (action, expression) in enumerate(bench_rules.RULES[:5])
        ]  # fmt: skip
        add_runs_errors_and_actions(vms, history[0], rules, now)
    samples = insert_samples(history, with_data[FULL_HISTORY_VMS:], sample_count, now)
    with connection.cursor() as cursor:  # statistics, as autovacuum keeps them in production
        cursor.execute("ANALYZE")
    return {
        "vms": vms, "rules": rules, "detail": history[0], "samples": samples,
        "host": next(vm.host_id for vm in vms if vm.host_id is not None),
        "seconds": time.perf_counter() - started,
    }  # fmt: skip


def host(i: int, now: datetime) -> Any:
    from idlevm.inventory.models import Host

    return Host(
        id=i, name=f"node{i:03d}", state=2, state_name="MONITORED", total_cpu=3200,
        cpu_usage=1600, max_cpu=3200, total_mem=256 << 20, mem_usage=128 << 20,
        max_mem=256 << 20, running_vms=16, first_seen=now - timedelta(days=30), last_seen=now,
    )  # fmt: skip


def add_runs_errors_and_actions(
    vms: list[Any], detail: Any, rules: list[Any], now: datetime
) -> None:
    """A day of cycles, the errors of VMs without fresh data, and dry-run action history."""
    from idlevm.inventory.models import CollectionRun, ErrorMessage
    from idlevm.rules.models import ActionRecord

    CollectionRun.objects.bulk_create(
        CollectionRun(started=now - timedelta(seconds=STEP * i), outcome="ok", hosts=HOSTS,
                      vms=len(vms), finished=now - timedelta(seconds=STEP * i - 3))
        for i in range(288)
    )  # fmt: skip
    stale = [vm for vm in vms if vm.state_name == "ACTIVE" and vm.idle_received is None]
    ErrorMessage.objects.bulk_create(
        ErrorMessage(kind="idle_missing", subject=f"vm:{vm.id}", message=f"VM {vm.id} no data",
                     first_seen=now - timedelta(days=1), modified=now)
        for vm in stale
    )  # fmt: skip
    rnd = random.Random(SEED)
    records = []
    for i in range(5000):
        vm = detail if i < 40 else rnd.choice(vms)  # the VM whose page is measured
        rule = rnd.choice(rules)
        records.append(ActionRecord(
            time=now - timedelta(seconds=rnd.uniform(0, 7 * 86400)), rule=rule,
            rule_name=rule.name, rule_expression=rule.expression, vm_id=vm.id, vm_name=vm.name,
            vm_owner=vm.owner, vm_group=vm.group, vm_host=vm.host_name, action=rule.action,
            dry_run=True, outcome=ActionRecord.Outcome.WOULD, evidence={"idle": True},
        ))  # fmt: skip
    ActionRecord.objects.bulk_create(records, batch_size=1000)


def sample_rows(
    vm_ids: list[int], per_vm: int, now: datetime, rnd: random.Random
) -> Iterator[tuple[Any, ...]]:
    """`per_vm` samples per VM, one per STEP up to now: busy days, idle nights."""
    from django.db import connection

    adapt = connection.ops.adapt_datetimefield_value
    end = int(now.timestamp())
    for vm_id in vm_ids:
        idle_since = None
        for k in range(per_vm, 0, -1):
            t = end - k * STEP + rnd.randrange(-20, 20)
            hour = (t // 3600) % 24
            idle = (hour < 7 or hour > 19) != (rnd.random() < 0.1)
            idle_since = (idle_since or t) if idle else None
            cpu = rnd.uniform(0, 2) if idle else rnd.uniform(5, 100)
            yield (
                vm_id, k, t, adapt(datetime.fromtimestamp(t, now.tzinfo)), idle,
                t - idle_since if idle_since else None, cpu, rnd.uniform(0, 5),
                cpu / 25, rnd.uniform(0, 1e6) if not idle else rnd.uniform(0, 1e4),
                rnd.uniform(0, 1e6), rnd.uniform(0, 5e5), 0, 0, None,
            )  # fmt: skip


def insert_samples(history: list[Any], others: list[Any], total: int, now: datetime) -> int:
    """executemany in batches (COPY on PostgreSQL): a million rows in seconds."""
    from django.db import connection, transaction

    from idlevm.inventory.collect import SAMPLE_COLUMNS

    week = 7 * 86400 // STEP
    history = history[: max(1, total // 2 // week)]
    rest = max(0, total - len(history) * week)
    per_other = max(1, rest // max(1, len(others)))
    rnd = random.Random(SEED)
    rows = sample_rows([vm.id for vm in history], week, now, rnd)
    more = sample_rows([vm.id for vm in others][: rest // per_other], per_other, now, rnd)
    table = "inventory_idlesample"
    columns = ", ".join(f'"{c}"' for c in SAMPLE_COLUMNS)
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in (*rows, *more):
                    copy.write_row(row)
                    count += 1
            return count
        sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(SAMPLE_COLUMNS))})"
        batch: list[tuple[Any, ...]] = []
        for row in (*rows, *more):
            batch.append(row)
            if len(batch) == 20_000:
                cursor.executemany(sql, batch)
                count += len(batch)
                batch = []
        cursor.executemany(sql, batch)
        count += len(batch)
    return count


# --- measuring ------------------------------------------------------------------------------


def stats(times: list[float]) -> tuple[float, float]:
    """Median and p95, in milliseconds."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def page(client: Any, url: str) -> Callable[[], object]:
    def get() -> object:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    return get


def bare_list(offset: int, per: int = 50) -> Callable[[], object]:
    """What any list page must pay: the count, and one page of rows (all columns but the
    large JSON ones), in raw SQL."""
    from django.db import connection

    def run() -> object:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM inventory_virtualmachine WHERE gone_at IS NULL")
            cursor.fetchone()
            cursor.execute(
                "SELECT id, name, owner, host_id, host_name, state_name, lcm_state_name, idle, "
                "idle_since, idle_received, cpu_pct, net_rx_bps, net_tx_bps "
                "FROM inventory_virtualmachine WHERE gone_at IS NULL ORDER BY id "
                f"LIMIT {per} OFFSET {offset}"
            )
            return cursor.fetchall()

    return run


def bare_samples(vm_id: int, since: datetime) -> Callable[[], object]:
    from django.db import connection

    def run() -> object:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT received, idle, cpu_pct, load, disk_bps, net_rx_bps, net_tx_bps "
                "FROM inventory_idlesample WHERE vm_id = %s AND received >= %s ORDER BY received",
                [vm_id, connection.ops.adapt_datetimefield_value(since)],
            )
            return cursor.fetchall()

    return run


def bare_vm(vm_id: int) -> Callable[[], object]:
    from django.db import connection

    def run() -> object:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM inventory_virtualmachine WHERE id = %s", [vm_id])
            return cursor.fetchall()

    return run


def queries(run: Callable[[], object]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured)


def pages(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, URL, bare cost key) of every measured page."""
    vm = data["detail"]
    rule = data["rules"][0]
    word = vm.name.split("-")[0]
    return [
        ("overview", "/", ""),
        ("VM list, first page", "/vms/", "list"),
        ("VM list, page 150 (deep)", "/vms/?page=150", "deep"),
        ("VM list, idle + host + search", f"/vms/?idle=yes&host={data['host']}&q={word}",
         "list"),
        ("VM list, idle (a third of the VMs)", "/vms/?idle=yes", "list"),
        ("VM list, sorted by idle for", "/vms/?sort=-idle_for", "list"),
        ("VM list, sorted by idle for, page 150", "/vms/?sort=-idle_for&page=150", "deep"),
        ("VM list, sorted by net, exempt=no", "/vms/?sort=-net&exempt=no", "list"),
        (f"VM list, matched by rule ({rule.expression})", f"/vms/?rule={rule.pk}", "list"),
        ("VM detail (7 days of samples, 5 rules, 40 actions)", f"/vms/{vm.id}/", "vm"),
        ("chart, 24 h (288 samples)", f"/vms/{vm.id}/chart.svg?range=24h", "samples24"),
        ("chart, 7 days (2016 samples)", f"/vms/{vm.id}/chart.svg?range=7d", "samples7"),
    ]  # fmt: skip


def measure(data: dict[str, Any], runs: int, now: datetime) -> list[dict[str, Any]]:
    """Every page and bare cost once per round, `runs` rounds: a burst of load from
    elsewhere on the machine then spreads over all rows instead of spoiling one."""
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    viewer, _ = User.objects.get_or_create(username="bench-viewer")  # active, no permission
    client.force_login(viewer)
    vm = data["detail"]
    bares = {
        "list": bare_list(0), "deep": bare_list(149 * 50), "vm": bare_vm(vm.id),
        "samples24": bare_samples(vm.id, now - timedelta(hours=24)),
        "samples7": bare_samples(vm.id, now - timedelta(days=7)),
    }  # fmt: skip
    measured = {**{url: page(client, url) for _, url, _ in pages(data)}, **bares}
    times: dict[str, list[float]] = {key: [] for key in measured}
    for _ in range(WARMUP):
        for run in measured.values():
            run()
    for _ in range(runs):
        for key, run in measured.items():
            started = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - started)
    out = []
    for label, url, bare in pages(data):
        median, p95 = stats(times[url])
        out.append({
            "label": label, "url": url, "median": median, "p95": p95,
            "queries": queries(measured[url]), "bare": bare,
            "bare_median": stats(times[bare])[0] if bare else None,
        })  # fmt: skip
    return out


def table(results: list[dict[str, Any]]) -> str:
    names = {
        "list": "count + first 50 rows", "deep": "count + rows 7451-7500",
        "vm": "the VM's row", "samples24": "the VM's samples, 24 h",
        "samples7": "the VM's samples, 7 days",
    }  # fmt: skip
    lines = [
        "| page | median | p95 | SQL queries | bare cost (raw SQL) | bare median | page / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        bare = r["bare_median"]
        ratio = f"{r['median'] / bare:.1f}x" if bare else "-"
        lines.append(
            f"| {r['label']} (`{r['url']}`) | {r['median']:.1f} ms | {r['p95']:.1f} ms | "
            f"{r['queries']} | {names.get(r['bare'], '-')} | "
            f"{f'{bare:.2f} ms' if bare else '-'} | {ratio} |"
        )
    return "\n".join(lines)


# --- the index experiment -------------------------------------------------------------------

# Tried and left out: an index on VirtualMachine.idle_received made SQLite scan it for the
# idle filter and sort the rows (the idle=yes page query 4.4 -> 21.8 ms).
CANDIDATE_INDEXES = [
    "CREATE INDEX bench_vm_gone ON inventory_virtualmachine (gone_at)",
    "CREATE INDEX bench_sample_vm_received ON inventory_idlesample (vm_id, received)",
]


def add_candidate_indexes() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in CANDIDATE_INDEXES:
            cursor.execute(sql)
        cursor.execute("ANALYZE")


# --- the driver -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page")
    parser.add_argument("--index-experiment", action="store_true",
                        help="measure again after adding candidate indexes")  # fmt: skip
    args = parser.parse_args()
    setup_django()
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    data = build(args.vms, args.samples, now)
    print(f"{connection.vendor}: {len(data['vms'])} VMs, {data['samples']} samples, "
          f"built in {data['seconds']:.1f} s; {args.runs} requests per page after {WARMUP} "
          f"warm-up ones; Python {sys.version.split()[0]}")  # fmt: skip
    results = measure(data, args.runs, now)
    print(table(results))
    first = next(r for r in results if r["url"] == "/vms/")
    verdict = "met" if first["median"] <= TARGET_LIST_MS else "NOT met"
    print(f"\nTarget: VM list <= {TARGET_LIST_MS:.0f} ms median: {verdict} "
          f"({first['median']:.1f} ms first page)")  # fmt: skip
    if args.index_experiment:
        add_candidate_indexes()
        print("\nWith the candidate indexes:\n  " + ";\n  ".join(CANDIDATE_INDEXES))
        print(table(measure(data, args.runs, now)))


if __name__ == "__main__":
    main()
