"""The real consumers: libvirt's schema accepts our domains, QEMU uses our FIFOs.

Needs the Debian packages libvirt-clients (virt-xml-validate), libxml2-utils (xmllint, which
virt-xml-validate runs) and qemu-system-x86 (qemu-system-x86_64); skipped without them.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idlevm.host.domain import add_serial
from idlevm.host.fifo import fifo_paths, pipe_base

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
QEMU = shutil.which("qemu-system-x86_64")
needs_validator = pytest.mark.skipif(
    not (shutil.which("virt-xml-validate") and shutil.which("xmllint")),
    reason="virt-xml-validate or xmllint missing (apt install libvirt-clients libxml2-utils)",
)
needs_qemu = pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 missing (apt install qemu-system-x86)"
)


def fixture(name):
    return (DATA / name).read_text(encoding="utf-8")


def without_devices(xml):
    return re.sub(r"\t<devices>.*</devices>\n", "", xml, flags=re.S)


def generated_domains():
    """Every kind of domain `prepare` writes or leaves, as pytest params named by kind."""
    base = "/tmp/vm_serial/one42"
    names = ["one-6.x-deployment.0", "one-5.x-deployment.0", "one-3.x-deployment.0"]
    names += ["serial-pty.0", "console-pty.0"]
    domains = [(name, add_serial(fixture(name), base)[0]) for name in names]
    no_devices = without_devices(fixture("one-3.x-deployment.0"))
    domains.append(("no-devices", add_serial(no_devices, base)[0]))
    domains.append(("odd-path", add_serial(fixture("one-6.x-deployment.0"), "/srv/a&b/it's/x")[0]))
    return [pytest.param(xml, id=label) for label, xml in domains]


def validate(tmp_path, xml):
    path = tmp_path / "domain.xml"
    path.write_text(xml, encoding="utf-8")
    return subprocess.run(
        ["virt-xml-validate", str(path), "domain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
    )


@needs_validator
@pytest.mark.parametrize("xml", generated_domains())
def test_libvirt_schema_accepts_the_domain(tmp_path, xml):
    assert "<serial" in xml or "<console" in xml
    proc = validate(tmp_path, xml)
    assert proc.returncode == 0, proc.stdout.decode()


@needs_validator
def test_libvirt_schema_check_does_reject_a_bad_serial(tmp_path):
    # So that the test above cannot pass by accepting anything.
    xml = add_serial(fixture("one-3.x-deployment.0"), "/x")[0].replace("'pipe'", "'bogus'")
    assert validate(tmp_path, xml).returncode != 0


def qemu_command(base):
    # Only the monitor on the pipe chardev: no machine, no guest, no KVM needed.
    chardev = f"pipe,id=s0,path={base}"
    machine = ["-nodefaults", "-display", "none", "-machine", "none", "-accel", "tcg"]
    return [QEMU, *machine, "-chardev", chardev, "-mon", "chardev=s0,mode=readline"]


def read_until(fd, wanted, qemu, deadline):
    """Bytes read from the non-blocking FIFO `fd` until `wanted` matches (a regex)."""
    seen = b""
    while not re.search(wanted, seen):
        if time.monotonic() > deadline or qemu.poll() is not None:
            pytest.fail(f"no {wanted!r} from QEMU (exit {qemu.poll()}); got {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = b""
        if not chunk:
            time.sleep(0.02)
        seen += chunk
    return seen


@needs_qemu
def test_qemu_talks_through_the_fifos_prepare_made(tmp_path):
    directory = str(tmp_path / "vm_serial")
    prepare = subprocess.run(
        [sys.executable, "-m", "idlevm.host.vmm", "prepare", "--vm-id", "42", "--dir", directory],
        cwd=str(REPO),
        timeout=30,
    )
    assert prepare.returncode == 0
    version = subprocess.run([QEMU, "--version"], stdout=subprocess.PIPE, timeout=30).stdout
    number = re.search(rb"version ([0-9][^\s]*)", version).group(1)
    in_path, out_path = fifo_paths(directory, 42)
    deadline = time.monotonic() + 10
    qemu = subprocess.Popen(
        qemu_command(pipe_base(directory, 42)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out_fd = os.open(out_path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        banner = read_until(out_fd, rb"QEMU [^\r\n]* monitor", qemu, deadline)
        assert banner.startswith(b"QEMU " + number)
        # QEMU holds the .in FIFO open for reading now: a non-blocking open cannot fail.
        in_fd = os.open(in_path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(in_fd, b"info version\n")
            read_until(out_fd, b"\r\n" + re.escape(number), qemu, deadline)
            os.write(in_fd, b"quit\n")
            assert qemu.wait(timeout=max(0.1, deadline - time.monotonic())) == 0
        finally:
            os.close(in_fd)
    finally:
        os.close(out_fd)
        if qemu.poll() is None:
            qemu.kill()
        qemu.communicate()


@needs_qemu
def test_qemu_refuses_to_start_without_the_fifos(tmp_path):
    # Why prepare runs before deploy and restore: QEMU's pipe chardev never creates them.
    base = str(tmp_path / "vm_serial" / "one42")
    proc = subprocess.run(
        qemu_command(base), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10
    )
    assert proc.returncode != 0
    # QEMU tries <base>.in and <base>.out, then <base> itself, and names the last.
    assert f"Could not open '{base}': No such file or directory" in proc.stderr.decode()
    assert not os.path.lexists(base + ".in")
