"""The driver hook OpenNebula's kvm driver wrappers call around a VM's life on a host.

    python3 -m idlevm.host.vmm prepare --vm-id ID [--domain FILE] [--dir DIR]
    python3 -m idlevm.host.vmm cleanup --vm-id ID [--dir DIR] [--state-dir DIR]

prepare (before deploy and restore) creates the FIFOs DIR/one<ID>.in and .out, then, given a
domain XML file, adds the serial port 0 on them. The FIFOs come first: QEMU refuses to start
a domain whose pipe does not exist, so if they cannot be made the domain stays unchanged. A
domain with its own serial port 0, or naming a path in DIR (another VM's FIFOs), is left
unchanged too: reported, exit status 0 (a hook never stops a deploy).
cleanup (after save, shutdown, cancel, migration away) removes the FIFOs and drops the VM
from the probe's cached state. Both are idempotent.

OpenNebula copies a driver's stderr into the VM log: one short line per thing done or
refused. Exit status: 0 done (including "left unchanged"), 1 failed, 2 usage error.
"""

import argparse
import os
import sys
from typing import List, Optional

from . import cache, domain, fifo

PREFIX = "idlevm vmm: "
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def say(message: str) -> None:
    """One line on stderr, which OpenNebula shows in the VM log."""
    sys.stderr.write(PREFIX + message + "\n")
    sys.stderr.flush()


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse exits on usage errors and --help
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    if args.command == "prepare":
        return prepare(args.vm_id, args.dir, args.domain)
    return cleanup(args.vm_id, args.dir, args.state_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idlevm vmm", description="Serial-port FIFOs of a VM for the idlevm probe."
    )
    # `required=` for subparsers is Python 3.7+; the attribute works on 3.6 as well.
    commands = parser.add_subparsers(dest="command", metavar="{prepare,cleanup}")
    commands.required = True
    prepare_parser = commands.add_parser(
        "prepare", help="create the FIFOs, then add the serial port to the domain XML"
    )
    _add_common(prepare_parser)
    prepare_parser.add_argument(
        "--domain", metavar="FILE", help="libvirt domain XML to edit in place (deployment file)"
    )
    cleanup_parser = commands.add_parser(
        "cleanup", help="remove the FIFOs and the probe's state of the VM"
    )
    _add_common(cleanup_parser)
    cleanup_parser.add_argument(
        "--state-dir", metavar="DIR", help="the probe's state directory (default: DIR/.state)"
    )
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vm-id", required=True, type=_vm_id, metavar="ID", help="VM id")
    parser.add_argument(
        "--dir",
        default=fifo.DEFAULT_DIR,
        type=_directory,
        metavar="DIR",
        help=f"FIFO directory (default: {fifo.DEFAULT_DIR})",
    )


def _vm_id(text: str) -> int:
    try:
        return fifo.parse_vm_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _directory(text: str) -> str:
    # Absolute: the path goes into the domain XML, and QEMU does not run in our directory.
    if not text:
        raise argparse.ArgumentTypeError("empty directory")
    return os.path.abspath(text)


def prepare(vm_id: int, directory: str, domain_file: Optional[str]) -> int:
    """Create the FIFOs, then edit the domain XML if given; the exit status."""
    try:
        fifo.prepare_fifos(directory, vm_id, report=say)
    except fifo.HostSetupError as error:
        say(f"{error}" + ("; domain left unchanged" if domain_file else ""))
        return EXIT_FAILED
    if domain_file is None:
        return EXIT_OK
    base = fifo.pipe_base(directory, vm_id)
    try:
        outcome, foreign = domain.rewrite_domain_file(domain_file, base)
    except domain.DomainError as error:
        say(f"{error}; domain left unchanged")
        return EXIT_FAILED
    except ValueError as error:
        say(f"cannot put the path in {domain_file}: {error}; domain left unchanged")
        return EXIT_FAILED
    except OSError as error:
        say(f"cannot rewrite {domain_file}: {error.strerror or error}; domain left unchanged")
        return EXIT_FAILED
    say(_outcome_message(outcome, domain_file, base, vm_id, foreign))
    return EXIT_OK


def _outcome_message(
    outcome: str, domain_file: str, base: str, vm_id: int, foreign: Optional[str]
) -> str:
    if outcome == domain.ADDED:
        return f"{domain_file}: added serial port 0 on {base}.in/.out"
    if outcome == domain.ALREADY_PRESENT:
        return f"{domain_file}: serial port 0 on {base} already there: unchanged"
    unchanged = f"unchanged, VM {vm_id} gets no idle serial port"
    if outcome == domain.FOREIGN_PATH:
        # Named for the operator: which VM's FIFOs a device of this domain would open.
        owner = _fifo_owner(foreign or "", os.path.dirname(base))
        if owner is not None and owner != vm_id:
            whose = f"which belongs to another VM's serial port (VM {owner})"
        else:
            whose = "in the serial FIFO directory, which only idlevm's serial port may use"
        return f"{domain_file}: a device of this domain uses {foreign}, {whose}: {unchanged}"
    return f"{domain_file}: has its own serial port 0 or serial console: {unchanged}"


def _fifo_owner(path: str, directory: str) -> Optional[int]:
    """The VM whose FIFOs `path` names (DIR/one<ID>, .in or .out), else None."""
    folder, name = os.path.split(path)
    if folder != directory or not name.startswith("one"):
        return None
    for suffix in (".in", ".out"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    try:
        return fifo.parse_vm_id(name[3:])
    except ValueError:
        return None


def cleanup(vm_id: int, directory: str, state_dir: Optional[str]) -> int:
    """Remove the FIFOs and the probe's state; each part is tried; the exit status."""
    status = EXIT_OK
    done = False
    try:
        for path in fifo.remove_fifos(directory, vm_id):
            say(f"removed FIFO {path}")
            done = True
    except fifo.HostSetupError as error:
        say(str(error))
        status = EXIT_FAILED
    # The probe keeps every VM's state in one locked file (idlevm.host.cache): drop this
    # VM's. Not strictly needed (new FIFOs start afresh), but a VM gone for good is forgotten.
    state_dir = os.path.abspath(state_dir or os.path.join(directory, ".state"))
    try:
        forgotten = cache.forget(state_dir, vm_id)
    except OSError as error:
        say(f"cannot drop the probe's state of VM {vm_id} in {state_dir}: {error}")
        status = EXIT_FAILED
    else:
        if forgotten:
            say(f"dropped the probe's state of VM {vm_id} in {state_dir}")
            done = True
    if not done and status == EXIT_OK:
        say(f"nothing to remove for VM {vm_id} in {directory}")
    return status


if __name__ == "__main__":
    sys.exit(main())
