"""python -m idlevm.onesim: serve a simulated OpenNebula until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from idlevm.onesim.feeder import IdleFeeder
from idlevm.onesim.probe import ProbeRunner
from idlevm.onesim.scenario import ScenarioError
from idlevm.onesim.server import OneSimServer
from idlevm.onesim.testing import build_cloud


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _auth(value: str) -> str:
    if ":" not in value or value.startswith(":"):
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m idlevm.onesim", description=__doc__)
    p.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 2633),
        help="HOST:PORT to serve on (port 0 picks a free one)",
    )
    p.add_argument(
        "--auth",
        type=_auth,
        default="oneadmin:secret",
        help="the only session accepted, USER:PASSWORD",
    )
    p.add_argument("--hosts", type=int, default=5, help="generated hosts")
    p.add_argument("--vms", type=int, default=100, help="generated VMs")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated scenario")
    p.add_argument("--scenario", help="JSON scenario file (replaces --hosts/--vms/--seed)")
    p.add_argument(
        "--transition-seconds",
        type=float,
        default=2.0,
        help="duration of each transient lifecycle state (0 = instantaneous)",
    )
    p.add_argument(
        "--list-order",
        choices=["asc", "desc"],
        default="desc",
        help="pool order by id, like oned.conf API_LIST_ORDER (default desc)",
    )
    p.add_argument(
        "--idle-data",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="publish IDLE_* records for running VMs every SECONDS (0 = never), "
        "standing in for agents and the host probe",
    )
    p.add_argument(
        "--fifo-dir",
        metavar="DIR",
        help="play the KVM driver and monitord: FIFOs for running VMs in DIR/<host name>/, "
        "and the real probe (idlevm.host.probe) run there and merged into the cloud",
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the probe runs with --fifo-dir (OpenNebula's MONITOR_VM is 30 s)",
    )
    args = p.parse_args(argv)
    if args.fifo_dir and args.idle_data > 0:
        p.error("--idle-data and --fifo-dir both publish idle data: choose one")
    if args.probe_interval <= 0:
        p.error("--probe-interval must be positive")
    return args  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cloud = build_cloud(
            args.hosts, args.vms, args.seed, args.auth, args.transition_seconds,
            args.scenario, args.list_order.upper(),
        )  # fmt: skip
    except (ScenarioError, ValueError) as exc:
        print(f"onesim: {exc}", file=sys.stderr)
        return 2
    try:
        server = OneSimServer(cloud, *args.listen)
    except OSError as exc:
        print(f"onesim: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        return 1
    feeder = IdleFeeder(cloud, args.idle_data).start() if args.idle_data > 0 else None
    runner = ProbeRunner(cloud, args.fifo_dir, args.probe_interval) if args.fifo_dir else None
    if runner is not None:
        runner.start()
    cloud.warm()  # render every VM once now, so the first big pool call is not the slow one
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # Serve from a thread: shutdown() must not be called from the serving thread.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    print(f"onesim listening on {server.url}", flush=True)
    stop.wait()
    if feeder is not None:
        feeder.stop()
    if runner is not None:
        runner.stop()
    server.shutdown()
    thread.join()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
