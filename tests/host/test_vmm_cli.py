"""`python3 -m idlevm.host.vmm`, as the driver wrappers run it: exit codes, stderr, files."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from idlevm.host.cache import StateDir, VmState

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def vmm(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "idlevm.host.vmm", *args],
        cwd=str(REPO),
        capture_output=True,
        timeout=30,
    )
    assert proc.stdout == b""  # stdout is the driver's: nothing of ours goes there
    assert b"Traceback" not in proc.stderr
    return proc.returncode, proc.stderr.decode()


@pytest.fixture
def fifo_dir(tmp_path):
    return str(tmp_path / "vm_serial")


@pytest.fixture
def deployment(tmp_path):
    path = tmp_path / "deployment.0"
    path.write_bytes((DATA / "one-6.x-deployment.0").read_bytes())
    return path


def is_fifo(path):
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def test_prepare_creates_fifos_and_adds_the_serial_port(fifo_dir, deployment):
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(deployment))

    assert status == 0
    assert is_fifo(fifo_dir + "/one42.in") and is_fifo(fifo_dir + "/one42.out")
    assert f"<source path='{fifo_dir}/one42'/>" in deployment.read_text()
    assert err.splitlines() == [
        f"idlevm vmm: created directory {fifo_dir} (0700)",
        f"idlevm vmm: created FIFO {fifo_dir}/one42.in (0600)",
        f"idlevm vmm: created FIFO {fifo_dir}/one42.out (0600)",
        f"idlevm vmm: {deployment}: added serial port 0 on {fifo_dir}/one42.in/.out",
    ]


def test_prepare_twice_gives_the_same_result(fifo_dir, deployment):
    vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(deployment))
    once = deployment.read_bytes()
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(deployment))

    assert status == 0
    assert deployment.read_bytes() == once
    assert "one42.out exists: reused" in err
    assert f"serial port 0 on {fifo_dir}/one42 already there: unchanged" in err


def test_prepare_without_domain_only_makes_fifos(fifo_dir):
    assert vmm("prepare", "--vm-id", "0", "--dir", fifo_dir)[0] == 0
    assert sorted(os.listdir(fifo_dir)) == ["one0.in", "one0.out"]


def test_relative_dir_becomes_absolute_in_the_domain(tmp_path, deployment):
    relative = os.path.relpath(str(tmp_path / "rel"), str(REPO))
    status, _ = vmm("prepare", "--vm-id", "5", "--dir", relative, "--domain", str(deployment))
    assert status == 0
    assert f"<source path='{tmp_path}/rel/one5'/>" in deployment.read_text()


@pytest.mark.parametrize("name", ["serial-pty.0", "console-pty.0"])
def test_port_taken_leaves_the_domain_and_still_succeeds(tmp_path, fifo_dir, name):
    path = tmp_path / "deployment.0"
    path.write_bytes((DATA / name).read_bytes())
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(path))

    assert status == 0
    assert path.read_bytes() == (DATA / name).read_bytes()
    assert err.splitlines()[-1] == (
        f"idlevm vmm: {path}: has its own serial port 0 or serial console: unchanged,"
        " VM 42 gets no idle serial port"
    )


@pytest.mark.parametrize(
    ("vm", "whose"),
    [
        ("one2", "which belongs to another VM's serial port (VM 2)"),
        ("one2.out", "which belongs to another VM's serial port (VM 2)"),
        ("one42", "in the serial FIFO directory, which only idlevm's serial port may use"),
        ("notes", "in the serial FIFO directory, which only idlevm's serial port may use"),
    ],
)
def test_a_device_on_another_vms_fifo_leaves_the_domain_and_still_succeeds(
    tmp_path, fifo_dir, vm, whose
):
    # e.g. a template's RAW section giving the VM a pipe on VM 2's FIFOs: QEMU would write
    # VM 2's .out (speaking for it) and read its .in. Reported; the deploy goes on.
    other = f"{fifo_dir}/{vm}"
    path = tmp_path / "deployment.0"
    content = (
        (DATA / "one-6.x-deployment.0")
        .read_text()
        .replace(
            "</devices>",
            f"<serial type='pipe'><source path='{other}'/><target port='1'/></serial></devices>",
        )
    )
    path.write_text(content)
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(path))

    assert status == 0
    assert path.read_text() == content
    assert err.splitlines()[-1] == (
        f"idlevm vmm: {path}: a device of this domain uses {other}, {whose}:"
        " unchanged, VM 42 gets no idle serial port"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<domain type='kvm'><devices></domain>", "malformed XML: mismatched tag"),
        (b"<!DOCTYPE domain><domain><devices/></domain>", "DOCTYPE or entity declarations"),
    ],
)
def test_bad_domain_xml_fails_and_is_untouched(tmp_path, fifo_dir, content, message):
    path = tmp_path / "deployment.0"
    path.write_bytes(content)
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(path))

    assert status == 1
    assert path.read_bytes() == content
    last = err.splitlines()[-1]
    assert last.startswith(f"idlevm vmm: {path}: {message}")
    assert last.endswith("; domain left unchanged")


def test_domain_is_untouched_when_the_fifos_cannot_be_made(fifo_dir, deployment):
    os.mkdir(fifo_dir, 0o700)
    with open(fifo_dir + "/one42.in", "w") as planted:
        planted.write("x")
    before = deployment.read_bytes()
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(deployment))

    assert status == 1
    assert deployment.read_bytes() == before
    assert err.splitlines() == [
        f"idlevm vmm: {fifo_dir}/one42.in exists and is a regular file, not a FIFO: refused;"
        " domain left unchanged"
    ]


def test_unwritable_or_missing_domain_file_fails_cleanly(tmp_path, fifo_dir):
    missing = tmp_path / "nowhere" / "deployment.0"
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(missing))
    assert status == 1
    assert err.splitlines()[-1] == (
        f"idlevm vmm: cannot rewrite {missing}: No such file or directory; domain left unchanged"
    )


def test_world_writable_dir_is_refused(fifo_dir):
    os.mkdir(fifo_dir)
    os.chmod(fifo_dir, 0o777)
    status, err = vmm("prepare", "--vm-id", "42", "--dir", fifo_dir)
    assert status == 1
    assert err == (f"idlevm vmm: {fifo_dir} is writable by group or others (mode 0777): refused\n")


@pytest.mark.parametrize("vm_id", ["042", "-1", "+1", "1234567890", "", "4 2", "abc", "1e3"])
def test_bad_vm_id_is_a_usage_error(fifo_dir, vm_id):
    status, err = vmm("prepare", f"--vm-id={vm_id}", "--dir", fifo_dir)
    assert status == 2
    assert "argument --vm-id: invalid VM id" in err
    assert not os.path.lexists(fifo_dir)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["prepare"],
        ["cleanup", "--dir", "/tmp"],
        ["remove", "--vm-id", "1"],
        ["prepare", "--vm-id", "1", "--bogus"],
        ["prepare", "--vm-id", "1", "--dir", ""],
    ],
)
def test_usage_errors_exit_2(args):
    status, err = vmm(*args)
    assert status == 2
    assert "usage: idlevm vmm" in err


def cached_vms(state_dir):
    states = StateDir(str(state_dir))
    try:
        return sorted(states.load())
    finally:
        states.close()


def cache_vms(state_dir, vm_ids):
    """The probe's state file holding `vm_ids`, written by the probe's own code."""
    states = StateDir(str(state_dir))
    try:
        states.save({vm_id: VmState() for vm_id in vm_ids})
    finally:
        states.close()


def test_cleanup_removes_fifos_and_that_vms_probe_state_only(fifo_dir):
    vmm("prepare", "--vm-id", "42", "--dir", fifo_dir)
    vmm("prepare", "--vm-id", "43", "--dir", fifo_dir)
    cache_vms(fifo_dir + "/.state", [42, 43])

    status, err = vmm("cleanup", "--vm-id", "42", "--dir", fifo_dir)
    assert status == 0
    assert sorted(os.listdir(fifo_dir)) == [".state", "one43.in", "one43.out"]
    assert cached_vms(fifo_dir + "/.state") == [43]
    assert err.splitlines() == [
        f"idlevm vmm: removed FIFO {fifo_dir}/one42.in",
        f"idlevm vmm: removed FIFO {fifo_dir}/one42.out",
        f"idlevm vmm: dropped the probe's state of VM 42 in {fifo_dir}/.state",
    ]


def test_cleanup_with_nothing_there_succeeds(fifo_dir):
    status, err = vmm("cleanup", "--vm-id", "42", "--dir", fifo_dir)
    assert status == 0
    assert err == f"idlevm vmm: nothing to remove for VM 42 in {fifo_dir}\n"
    assert not os.path.lexists(fifo_dir)


def test_cleanup_uses_the_given_state_dir(fifo_dir, tmp_path):
    state = tmp_path / "probe-state"
    cache_vms(state, [42])
    status, err = vmm("cleanup", "--vm-id", "42", "--dir", fifo_dir, "--state-dir", str(state))
    assert status == 0
    assert cached_vms(state) == []
    assert err == f"idlevm vmm: dropped the probe's state of VM 42 in {state}\n"


def test_cleanup_refuses_a_symlinked_state_dir_and_still_removes_the_fifos(fifo_dir, tmp_path):
    real = tmp_path / "real-state"
    cache_vms(real, [42])
    vmm("prepare", "--vm-id", "42", "--dir", fifo_dir)
    os.symlink(str(real), fifo_dir + "/.state")

    status, err = vmm("cleanup", "--vm-id", "42", "--dir", fifo_dir)
    assert status == 1
    assert sorted(os.listdir(fifo_dir)) == [".state"]
    assert cached_vms(real) == [42]
    assert err.splitlines()[-1].startswith(
        f"idlevm vmm: cannot drop the probe's state of VM 42 in {fifo_dir}/.state: "
    )


def test_cleanup_refuses_a_regular_file_at_a_fifo_path(fifo_dir):
    os.mkdir(fifo_dir, 0o700)
    with open(fifo_dir + "/one42.out", "w") as planted:
        planted.write("keep me")
    status, err = vmm("cleanup", "--vm-id", "42", "--dir", fifo_dir)

    assert status == 1
    with open(fifo_dir + "/one42.out") as planted:
        assert planted.read() == "keep me"
    assert err == (f"idlevm vmm: {fifo_dir}/one42.out is a regular file, not a FIFO: not removed\n")


def test_prepare_and_cleanup_run_on_python_3_6(fifo_dir, deployment, python36):
    # The hypervisors' python3 may be this old; vermin checks the source, this runs it.
    def run(*args):
        command = [python36, "-m", "idlevm.host.vmm", *args]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return subprocess.run(command, cwd="/", env=env, capture_output=True, timeout=30)

    prepare = ["prepare", "--vm-id", "42", "--dir", fifo_dir, "--domain", str(deployment)]
    assert run(*prepare).returncode == 0
    once = deployment.read_bytes()
    assert run(*prepare).returncode == 0
    assert deployment.read_bytes() == once
    assert f"<source path='{fifo_dir}/one42'/>" in once.decode()
    assert is_fifo(fifo_dir + "/one42.out")
    cache_vms(fifo_dir + "/.state", [42])
    cleanup = run("cleanup", "--vm-id", "42", "--dir", fifo_dir)
    assert cleanup.returncode == 0, cleanup.stderr.decode()
    assert os.listdir(fifo_dir) == [".state"]
    assert cached_vms(fifo_dir + "/.state") == []
    assert run("prepare", "--vm-id", "042").returncode == 2
