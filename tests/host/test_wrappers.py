"""The generated wrappers and probes, run as real processes by real shells.

A fake remotes tree gets fake OpenNebula actions that record what they were given (arguments,
stdin, the FIFOs present when they ran) and exit with $FAKE_STATUS; the installer wraps them,
and the wrappers call the real hook (python3 -m idlevm.host.vmm) from the installed library.
The remotes path holds a space and a quote, to exercise the quoting on every path.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idlevm.host.domain import ADDED, add_serial

REPO = Path(__file__).resolve().parents[2]
ACTIONS = ("deploy", "save", "restore", "cancel", "shutdown", "migrate")
ARGS = {  # OpenNebula's arguments, each with "<vm_id> <host>" appended
    "deploy": ["/var/lib/one/datastores/0/42/deployment.0", "node 1"],
    "save": ["one-42", "/ds/0/42/checkpoint", "node 1"],
    "restore": ["/ds/0/42/checkpoint", "node 1", "one-42"],
    "cancel": ["one-42", "node 1"],
    "shutdown": ["one-42", "node 1"],
    "migrate": ["one-42", "node2", "node 1"],
}
DOMAIN = b"<domain type='kvm'><name>one-42</name><devices><disk/></devices></domain>\n"
SHELLS = sorted(
    {
        os.path.realpath(shutil.which(s) or ""): s
        for s in ("sh", "dash", "bash")
        if shutil.which(s)
    }.values()
)
HAVE_TIMEOUT = shutil.which("timeout") is not None

# The fake original: records arguments (NUL-separated), the FIFO directory's listing and
# stdin (or, for OpenNebula 3.x's deploy, the domain file it was given), then prints.
FAKE = """#!/bin/sh
rec=$FAKE_RECORD/{action}
for arg in "$@"; do printf '%s\\0' "$arg"; done >"$rec.args"
ls "$IDLEVM_SERIAL_DIR" >"$rec.fifos" 2>/dev/null
{read}
echo "stdout of {action}"
echo "stderr of {action}" >&2
exit "${{FAKE_STATUS:-0}}"
"""
READ_STDIN = 'cat >"$rec.stdin"'
READ_FILE = 'cat "$1" >"$rec.domain"'  # OpenNebula 3.x: the domain is already in $1
# Stands in for ssh: records its arguments and stdin, then runs the command here.
FAKE_SSH = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done >"$FAKE_RECORD/ssh.args"
cat >"$FAKE_RECORD/ssh.stdin"
if [ -n "$FAKE_SSH_FAIL" ]; then echo "ssh: connect to host: Connection refused" >&2; exit 255; fi
eval "command=\\${$#}"
exec sh -c "$command"
"""


def make_remotes(root, classic=False):
    """A fake remotes tree (current layout, or 3.x with classic=True), installed."""
    kvm = root / "vmm" / "kvm"
    kvm.mkdir(parents=True)
    for action in ACTIONS:
        read = READ_FILE if classic and action == "deploy" else READ_STDIN
        (kvm / action).write_text(FAKE.format(action=action, read=read))
        (kvm / action).chmod(0o755)
    probes = (
        ["im/kvm.d"] if classic else ["im/kvm-probes.d/host/system", "im/kvm-probes.d/vm/monitor"]
    )
    for folder in probes:
        (root / folder).mkdir(parents=True)
    command = [sys.executable, "-m", "idlevm.host.install", "--remotes", str(root)]
    proc = subprocess.run(command, cwd=str(REPO), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return root


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Installed trees (current and 3.x layouts), installed once and copied for each test."""
    base = tmp_path_factory.mktemp("installed")
    return {classic: make_remotes(base / str(classic), classic) for classic in (False, True)}


class Host:
    """An installed remotes tree and the environment its scripts run in."""

    def __init__(self, tmp_path, installed, classic=False):
        self.remotes = tmp_path / "one's remotes"
        shutil.copytree(str(installed[classic]), str(self.remotes))
        self.record = tmp_path / "record"
        self.serial = tmp_path / "vm serial"
        self.tmp = tmp_path / "tmp"
        self.bin = tmp_path / "bin"
        for folder in (self.record, self.tmp, self.bin):
            folder.mkdir()
        (self.bin / "ssh").write_text(FAKE_SSH)
        (self.bin / "ssh").chmod(0o755)
        # python3 found on PATH as on a host, but without a version manager's slow shim
        python = tmp_path / "python"
        python.mkdir()
        os.symlink(sys.executable, str(python / "python3"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("IDLEVM_", "FAKE_"))}
        self.env.update(
            FAKE_RECORD=str(self.record),
            IDLEVM_SERIAL_DIR=str(self.serial),
            TMPDIR=str(self.tmp),
            PATH="{}:{}:{}".format(self.bin, python, os.environ["PATH"]),
        )

    def script(self, rel):
        return str(self.remotes / rel)

    def run(self, rel, args, stdin=b"", shell="sh", **env):
        """Run a script of the remotes; stdin: bytes, or a file object."""
        command = ([shell] if shell else []) + [self.script(rel), *args]
        environ = dict(self.env, **env)
        kwargs = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
        return subprocess.run(command, env=environ, capture_output=True, timeout=60, **kwargs)

    def recorded(self, name):
        path = self.record / name
        return path.read_bytes() if path.exists() else None

    def args_of(self, action):
        return self.recorded(action + ".args").split(b"\0")[:-1]

    def fifos(self):
        return sorted(os.listdir(str(self.serial))) if self.serial.exists() else []

    def make_fifos(self):
        hook = [sys.executable, "-m", "idlevm.host.vmm", "prepare", "--vm-id", "42"]
        env = dict(self.env, PYTHONPATH=str(REPO))
        subprocess.run(
            [*hook, "--dir", str(self.serial)], env=env, check=True, stderr=subprocess.DEVNULL
        )
        assert self.fifos() == ["one42.in", "one42.out"]


@pytest.fixture
def host(tmp_path, installed):
    return Host(tmp_path, installed)


def full_args(action):
    return [*ARGS[action], "42", "node 1"]


# ---------------------------------------------------------------- every action


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("action", ACTIONS)
def test_original_gets_exactly_the_arguments(host, action, shell):
    args = [ARGS[action][0], "", "  two  spaces ", "$HOME `x` 'q' \"d\" \\", "*", "42", "h"]
    proc = host.run("vmm/kvm/" + action, args, stdin=b"", shell=shell)
    assert proc.returncode == 0, proc.stderr.decode()
    assert host.args_of(action) == [a.encode() for a in args]
    # stdout is the original's alone: OpenNebula reads deploy's stdout as the domain id
    assert proc.stdout == f"stdout of {action}\n".encode()
    assert f"stderr of {action}".encode() in proc.stderr


@pytest.mark.parametrize("status", [1, 7])  # 0: in the test above
@pytest.mark.parametrize("action", ACTIONS)
def test_exit_status_and_stdout_pass_through(host, action, status):
    proc = host.run(
        "vmm/kvm/" + action, full_args(action), stdin=b"data\n", FAKE_STATUS=str(status)
    )
    assert proc.returncode == status
    assert proc.stdout == f"stdout of {action}\n".encode()
    if action != "deploy":  # the action's stdin (OpenNebula's driver message) is untouched
        assert host.recorded(action + ".stdin") == b"data\n"


def test_wrapper_runs_by_its_shebang(host):
    proc = host.run("vmm/kvm/cancel", full_args("cancel"), shell=None)
    assert proc.returncode == 0
    assert proc.stdout == b"stdout of cancel\n"


@pytest.mark.parametrize("action", ACTIONS)
def test_without_a_vm_id_the_hook_is_skipped(host, action):
    proc = host.run("vmm/kvm/" + action, ["one-42", "x42", "node 1"], stdin=b"")
    assert proc.returncode == 0
    assert host.args_of(action) == [b"one-42", b"x42", b"node 1"]
    assert b"no VM id in the arguments (second-to-last is 'x42'): hook skipped" in proc.stderr
    assert host.fifos() == []


def test_missing_original_fails_with_a_message(host):
    os.unlink(host.script("vmm/kvm/save.idlevm-orig"))
    proc = host.run("vmm/kvm/save", full_args("save"))
    assert proc.returncode == 1
    assert b"save.idlevm-orig is missing" in proc.stderr


# ---------------------------------------------------------------- deploy


def test_deploy_stdin_mode_adds_the_serial_port(host):
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=DOMAIN)
    assert proc.returncode == 0, proc.stderr.decode()
    fed = host.recorded("deploy.stdin")
    assert b"<serial type='pipe'>" in fed
    assert f"<source path='{host.serial}/one42'/>".encode() in fed
    assert fed.replace(fed[fed.index(b"<serial") : fed.index(b"</serial>") + 9], b"").split() == (
        DOMAIN.split()
    )
    assert host.recorded("deploy.fifos") == b"one42.in\none42.out\n"  # before the original
    assert os.listdir(str(host.tmp)) == []  # the temporary copy (VNC passwords) is gone
    assert proc.stdout == b"stdout of deploy\n"


def test_deploy_stdin_mode_keeps_the_domain_when_the_hook_fails(host):
    shutil.rmtree(host.script("idlevm-lib"))
    domain = DOMAIN * 2000  # larger than a pipe buffer
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=domain, FAKE_STATUS="7")
    assert proc.returncode == 7
    assert host.recorded("deploy.stdin") == domain
    assert b"idlevm-lib not found" in proc.stderr
    assert b"serial port not added" in proc.stderr
    assert os.listdir(str(host.tmp)) == []


def test_deploy_keeps_the_domain_when_the_hook_refuses_it(host):
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=b"<not a domain")
    assert proc.returncode == 0
    assert host.recorded("deploy.stdin") == b"<not a domain"
    assert b"vmm prepare failed with status 1" in proc.stderr


def test_deploy_without_a_temporary_directory_still_deploys(host):
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=DOMAIN, TMPDIR="/nonexistent")
    assert proc.returncode == 0
    assert host.recorded("deploy.stdin") == DOMAIN
    assert b"no temporary directory" in proc.stderr


def big_domain(ending):
    """A domain of about 200 KB (the size of a full pipe buffer, many times over) that the
    hook can edit, ending with `ending`."""
    padding = "".join(f"\t\t<!-- padding line {i:06d} {'x' * 60} -->\n" for i in range(2500))
    text = f"<domain type='kvm'>\n\t<name>one-42</name>\n\t<devices>\n{padding}\t</devices>\n"
    return (text + "</domain>" + ending).encode()


@pytest.fixture
def small_tmpdir(tmp_path):
    """Mounts a tmpfs of the size given (root only: skips otherwise); unmounted after."""
    mounted = []

    def mount(size):
        where = tmp_path / f"tmpfs-{size}"
        where.mkdir()
        options = f"size={size},mode=1777"
        command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]
        try:
            proc = subprocess.run(command, capture_output=True, timeout=30)
        except OSError as error:
            pytest.skip(f"cannot run mount: {error}")
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (needs root): {proc.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True, timeout=30)


@pytest.mark.parametrize("ending", ["\n", "\n\n\n", ""])
@pytest.mark.parametrize("shell", SHELLS)
def test_deploy_with_a_full_tmpdir_feeds_the_domain_byte_for_byte(
    host, small_tmpdir, shell, ending
):
    # Saving 200 KB in 64 KB fails after stdin was read: the original must still get it all.
    tmpdir = small_tmpdir("64k")
    domain = big_domain(ending)
    proc = host.run(
        "vmm/kvm/deploy",
        full_args("deploy"),
        stdin=domain,
        shell=shell,
        TMPDIR=str(tmpdir),
        FAKE_STATUS="7",
    )
    assert proc.returncode == 7  # the original's, through the pipeline
    assert host.recorded("deploy.stdin") == domain
    assert proc.stdout == b"stdout of deploy\n"
    assert f"could not save the domain in {tmpdir}".encode() in proc.stderr
    assert b"serial port not added: VM 42 runs without idle data" in proc.stderr
    assert os.listdir(str(tmpdir)) == []  # the partial copy (VNC passwords) is gone


@pytest.mark.parametrize("shell", SHELLS)
def test_deploy_feeds_the_domain_as_sent_when_the_hook_cannot_write(host, small_tmpdir, shell):
    # Room for our copy, not for the hook's edited one beside it: the hook fails and changes
    # nothing; the original gets the domain from memory.
    tmpdir = small_tmpdir("320k")
    domain = big_domain("\n")
    proc = host.run(
        "vmm/kvm/deploy", full_args("deploy"), stdin=domain, shell=shell, TMPDIR=str(tmpdir)
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert host.recorded("deploy.stdin") == domain
    assert b"cannot rewrite" in proc.stderr
    assert b"serial port not added: VM 42 runs without idle data" in proc.stderr
    assert os.listdir(str(tmpdir)) == []


@pytest.mark.parametrize("ending", ["\n\n", ""])
@pytest.mark.parametrize("shell", SHELLS)
def test_deploy_feeds_a_large_edited_domain_whole(host, shell, ending):
    domain = big_domain(ending)
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=domain, shell=shell)
    assert proc.returncode == 0, proc.stderr.decode()
    expected, outcome = add_serial(domain.decode(), str(host.serial / "one42"))
    assert outcome == ADDED
    assert host.recorded("deploy.stdin") == expected.encode()
    assert os.listdir(str(host.tmp)) == []


def restricted_path(host):
    """A PATH with the tools the scripts use, but no python3."""
    tools = host.bin / "tools"
    tools.mkdir()
    for tool in ("dirname", "timeout", "mktemp", "cat", "rm", "sed", "ls", "sh", "env"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, str(tools / tool))
    return f"{host.bin}:{tools}"


def test_deploy_without_python3_still_deploys(host):
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=DOMAIN, PATH=restricted_path(host))
    assert proc.returncode == 0
    assert host.recorded("deploy.stdin") == DOMAIN
    assert b"vmm prepare failed: python3 or timeout not found" in proc.stderr
    assert proc.stdout == b"stdout of deploy\n"


@pytest.mark.skipif(not HAVE_TIMEOUT, reason="no timeout(1)")
def test_a_hanging_hook_is_cut_short(host, tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    started = time.monotonic()
    env = {"IDLEVM_PYTHON": str(slow), "IDLEVM_TIMEOUT": "1"}
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=DOMAIN, **env)
    assert time.monotonic() - started < 15
    assert proc.returncode == 0
    assert host.recorded("deploy.stdin") == DOMAIN
    assert b"vmm prepare timed out" in proc.stderr


def test_deploy_file_mode_edits_the_file_and_never_reads_stdin(tmp_path, installed):
    host = Host(tmp_path, installed, classic=True)
    domain = tmp_path / "deployment.0"
    domain.write_bytes(DOMAIN)
    stdin = tmp_path / "stdin"
    stdin.write_bytes(b"the ssh channel: not for us\n")
    with open(str(stdin), "rb") as channel:
        proc = host.run("vmm/kvm/deploy", [str(domain), "node 1", "42", "node 1"], stdin=channel)
        assert os.lseek(channel.fileno(), 0, os.SEEK_CUR) == 0  # nobody read from it
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"<serial type='pipe'>" in host.recorded("deploy.domain")
    assert host.recorded("deploy.fifos") == b"one42.in\none42.out\n"
    assert proc.stdout == b"stdout of deploy\n"


def test_deploy_file_mode_with_a_relative_path(tmp_path, installed):
    host = Host(tmp_path, installed, classic=True)
    (tmp_path / "deployment.0").write_bytes(DOMAIN)
    command = ["sh", host.script("vmm/kvm/deploy"), "deployment.0", "node 1", "42", "node 1"]
    proc = subprocess.run(
        command,
        cwd=str(tmp_path),
        env=host.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"<serial type='pipe'>" in host.recorded("deploy.domain")


# ---------------------------------------------------------------- restore, save, cancel, shutdown


def test_restore_creates_the_fifos_before_the_original(host):
    proc = host.run("vmm/kvm/restore", full_args("restore"), stdin=b"driver message")
    assert proc.returncode == 0, proc.stderr.decode()
    assert host.recorded("restore.fifos") == b"one42.in\none42.out\n"
    assert host.recorded("restore.stdin") == b"driver message"
    assert host.fifos() == ["one42.in", "one42.out"]


def test_restore_runs_even_when_the_fifos_cannot_be_made(host):
    host.serial.write_text("a file where the directory should be")
    proc = host.run("vmm/kvm/restore", full_args("restore"), FAKE_STATUS="1")
    assert proc.returncode == 1
    assert host.args_of("restore") == [a.encode() for a in full_args("restore")]
    assert b"QEMU may refuse to start" in proc.stderr


@pytest.mark.parametrize("action", ["save", "cancel", "shutdown"])
def test_cleanup_only_after_success(host, action):
    host.make_fifos()
    proc = host.run("vmm/kvm/" + action, full_args(action), FAKE_STATUS="1")
    assert proc.returncode == 1
    assert host.fifos() == ["one42.in", "one42.out"]  # the VM may still run
    proc = host.run("vmm/kvm/" + action, full_args(action))
    assert proc.returncode == 0
    assert host.recorded(action + ".fifos") == b"one42.in\none42.out\n"  # after the original
    assert host.fifos() == []
    assert proc.stdout == f"stdout of {action}\n".encode()


def test_cleanup_failure_keeps_the_status(host):
    shutil.rmtree(host.script("idlevm-lib"))
    proc = host.run("vmm/kvm/shutdown", full_args("shutdown"))
    assert proc.returncode == 0
    assert b"not found" in proc.stderr


# ---------------------------------------------------------------- migrate


def test_migrate_prepares_the_destination_then_cleans_up(host):
    host.make_fifos()  # the VM runs here; the fake ssh makes "node2" this host too
    os.unlink(str(host.serial / "one42.in"))
    os.unlink(str(host.serial / "one42.out"))
    proc = host.run("vmm/kvm/migrate", full_args("migrate"), stdin=b"<VMM_DRIVER_ACTION_DATA/>")
    assert proc.returncode == 0, proc.stderr.decode()
    ssh = host.recorded("ssh.args").split(b"\0")[:-1]
    assert ssh[:4] == [b"-o", b"ConnectTimeout=10", b"-o", b"BatchMode=yes"]
    assert ssh[4] == b"node2"
    assert b"prepare --vm-id 42" in ssh[5]
    assert host.recorded("ssh.stdin") == b""  # the action data is the original's
    assert host.recorded("migrate.stdin") == b"<VMM_DRIVER_ACTION_DATA/>"
    assert host.recorded("migrate.fifos") == b"one42.in\none42.out\n"  # made before
    assert host.fifos() == []  # then removed here, after the migration succeeded
    assert proc.stdout == b"stdout of migrate\n"


def test_failed_migration_keeps_the_fifos(host):
    host.make_fifos()
    proc = host.run("vmm/kvm/migrate", full_args("migrate"), FAKE_STATUS="7")
    assert proc.returncode == 7
    assert host.fifos() == ["one42.in", "one42.out"]


def test_migrate_goes_on_when_ssh_fails(host):
    proc = host.run("vmm/kvm/migrate", full_args("migrate"), stdin=b"xml", FAKE_SSH_FAIL="1")
    assert proc.returncode == 0
    assert host.recorded("migrate.stdin") == b"xml"
    assert b"vmm prepare on node2 failed with status 255" in proc.stderr
    assert b"no FIFOs for VM 42 on node2: libvirt may refuse the migration" in proc.stderr


def test_migrate_refuses_an_option_as_destination(host):
    args = ["one-42", "-oProxyCommand=touch /tmp/x", "node 1", "42", "node 1"]
    proc = host.run("vmm/kvm/migrate", args, FAKE_STATUS="1")
    assert proc.returncode == 1
    assert host.recorded("ssh.args") is None
    assert b"refused" in proc.stderr


# ---------------------------------------------------------------- probes

PROBES = ["im/kvm-probes.d/host/system/idle.sh", "im/kvm-probes.d/vm/monitor/idle.sh"]


def test_probes_print_the_idle_data(host):
    host.serial.mkdir(mode=0o700)
    proc = host.run(PROBES[0], [])
    assert (proc.returncode, proc.stdout) == (0, b'IDLE="1"\n'), proc.stderr.decode()
    proc = host.run(PROBES[1], [])
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr.decode()


def test_classic_probe(tmp_path, installed):
    host = Host(tmp_path, installed, classic=True)
    proc = host.run("im/kvm.d/idle.sh", [])
    assert (proc.returncode, proc.stdout) == (0, b'IDLE="1"\n'), proc.stderr.decode()


@pytest.mark.parametrize("probe", PROBES)
def test_probe_exits_0_without_python3(host, probe):
    proc = host.run(probe, [], PATH=restricted_path(host))
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"python3 or timeout not found" in proc.stderr


@pytest.mark.parametrize("probe", PROBES)
def test_probe_prints_nothing_when_python_fails_half_way(host, probe, tmp_path):
    broken = tmp_path / "broken-python"
    broken.write_text('#!/bin/sh\necho \'IDLE="1;42:seq=\'\necho "Traceback" >&2\nexit 1\n')
    broken.chmod(0o755)
    proc = host.run(probe, [], IDLEVM_PYTHON=str(broken))
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"Traceback" in proc.stderr
    assert b"failed with status 1" in proc.stderr


@pytest.mark.skipif(not HAVE_TIMEOUT, reason="no timeout(1)")
def test_a_hanging_probe_exits_0(host, tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\necho partial\nexec sleep 60\n")
    slow.chmod(0o755)
    started = time.monotonic()
    proc = host.run(PROBES[0], [], IDLEVM_PYTHON=str(slow), IDLEVM_TIMEOUT="1")
    assert time.monotonic() - started < 15
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"timed out" in proc.stderr


def test_probe_exits_0_without_the_library(host):
    shutil.rmtree(host.script("idlevm-lib"))
    proc = host.run(PROBES[1], [])
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"idlevm-lib not found" in proc.stderr


# ---------------------------------------------------------------- portability


def test_deploy_and_probe_with_python_3_6(host, python36):
    proc = host.run("vmm/kvm/deploy", full_args("deploy"), stdin=DOMAIN, IDLEVM_PYTHON=python36)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"<serial type='pipe'>" in host.recorded("deploy.stdin")
    proc = host.run(PROBES[0], [], IDLEVM_PYTHON=python36)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b'IDLE="1"\n', b"")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck(host, tmp_path, installed):
    classic = Host(tmp_path / "classic", installed, classic=True)
    scripts = [host.script("vmm/kvm/" + action) for action in ACTIONS]
    scripts += [host.script(probe) for probe in PROBES]
    scripts += [classic.script("vmm/kvm/deploy"), classic.script("im/kvm.d/idle.sh")]
    proc = subprocess.run(["shellcheck", "--shell=sh", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
