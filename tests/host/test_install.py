"""`python3 -m idlevm.host.install`, run as a real process on fake OpenNebula remotes trees.

What is checked is the tree afterwards: files, bytes, modes, the MANIFEST, and that a rerun,
a dry run or a refusal leaves every file as it was (same bytes, mode, inode and mtime).
"""

import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from idlevm.host.wrappers import reads_stdin

REPO = Path(__file__).resolve().parents[2]
ACTIONS = ("deploy", "save", "restore", "cancel", "shutdown", "migrate")
CURRENT_PROBES = ["im/kvm-probes.d/host/system/idle.sh", "im/kvm-probes.d/vm/monitor/idle.sh"]


def make_remotes(root, classic=False):
    """A fake remotes tree: OpenNebula 3.x (classic) or current, with odd original modes."""
    kvm = root / "vmm" / "kvm"
    kvm.mkdir(parents=True)
    for number, action in enumerate(ACTIONS):
        body = "cat > $DEP_FILE\n" if action == "deploy" and not classic else "true\n"
        (kvm / action).write_bytes(f"#!/bin/bash\n# {action}\n{body}".encode())
        (kvm / action).chmod(0o755 - number)  # 0755, 0754, ...: each mode must come back
    (kvm / "poll").write_text("#!/bin/sh\n")
    folders = ["im/kvm.d"]
    if not classic:  # current versions have im/kvm.d too (monitord-client_control.sh)
        folders += ["im/kvm-probes.d/host/system", "im/kvm-probes.d/vm/monitor"]
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "cpu.sh").write_text("#!/bin/sh\necho CPU=1\n")
    return root


def install(remotes, *args, python=sys.executable):
    command = [python, "-m", "idlevm.host.install", "--remotes", str(remotes), *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONHOME", None)
    return subprocess.run(
        command, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60
    )


def snapshot(root, inodes=False):
    """Every path under root: mode and bytes (or link target); with inodes, inode and mtime."""
    found = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = Path(path).read_bytes()
            else:
                content = None
            extra = (info.st_ino, info.st_mtime_ns) if inodes else ()
            found[os.path.relpath(path, str(root))] = (info.st_mode, content, *extra)
    return found


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(remotes):
    return json.loads((remotes / "idlevm-lib" / "MANIFEST").read_text())


@pytest.fixture
def remotes(tmp_path):
    return make_remotes(tmp_path / "remotes")


# ---------------------------------------------------------------- install


def test_install_current_layout(remotes):
    before = snapshot(remotes)
    proc = install(remotes)
    assert proc.returncode == 0, proc.stderr
    kvm = remotes / "vmm" / "kvm"
    for action in ACTIONS:
        kept = kvm / (action + ".idlevm-orig")
        assert (
            snapshot(remotes)["vmm/kvm/" + action + ".idlevm-orig"] == before["vmm/kvm/" + action]
        )
        wrapper = (kvm / action).read_text()
        assert wrapper.splitlines()[:2] == ["#!/bin/sh", "# idlevm wrapper"]
        assert stat.S_IMODE((kvm / action).stat().st_mode) == 0o755
        assert kept.exists()
    assert (kvm / "poll").read_text() == "#!/bin/sh\n"  # not ours to wrap
    for probe in CURRENT_PROBES:
        assert stat.S_IMODE((remotes / probe).stat().st_mode) == 0o755
        assert "# idlevm wrapper" in (remotes / probe).read_text().splitlines()
    assert "--format host" in (remotes / CURRENT_PROBES[0]).read_text()
    assert "--format vm" in (remotes / CURRENT_PROBES[1]).read_text()
    assert not (remotes / "im/kvm.d/idle.sh").exists()  # current im/kvm.d starts monitord
    lines = proc.stdout.splitlines()
    assert lines[0] == "deploy input: stdin (auto: the original deploy reads the domain from stdin)"
    assert "wrap vmm/kvm/deploy (original kept as vmm/kvm/deploy.idlevm-orig)" in lines
    assert "onehost sync --force" in lines[-1]
    assert proc.stderr == ""


def test_library_and_manifest(remotes):
    assert install(remotes).returncode == 0
    lib = remotes / "idlevm-lib"
    copied = sorted(
        os.path.relpath(p, str(lib))
        for p in glob.glob(str(lib / "**"), recursive=True)
        if os.path.isfile(p)
    )
    sources = [
        "idlevm/__init__.py",
        "idlevm/protocol.py",
        *sorted("idlevm/host/" + p.name for p in (REPO / "idlevm/host").glob("*.py")),
    ]
    assert copied == sorted(["MANIFEST", *sources])
    for name in sources:
        assert (lib / name).read_bytes() == (REPO / name).read_bytes()
    for path in [lib, lib / "idlevm", lib / "idlevm/host"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
    for name in copied:
        assert stat.S_IMODE((lib / name).stat().st_mode) == 0o644
    content = manifest(remotes)
    assert content["deploy_input"] == "stdin"
    expected = ["idlevm-lib/" + s for s in sources] + CURRENT_PROBES
    expected += ["vmm/kvm/" + a for a in ACTIONS]
    assert sorted(content["files"]) == sorted(expected)
    for path, digest in content["files"].items():
        assert sha256(remotes / path) == digest
    assert content["wrapped"] == {
        "vmm/kvm/" + a: sha256(remotes / "vmm/kvm" / (a + ".idlevm-orig")) for a in ACTIONS
    }
    assert "version" in content


def test_install_classic_layout(tmp_path):
    remotes = make_remotes(tmp_path / "remotes", classic=True)
    proc = install(remotes)
    assert proc.returncode == 0, proc.stderr
    probe = remotes / "im/kvm.d/idle.sh"
    assert "--format host" in probe.read_text()
    assert "../../idlevm-lib" in probe.read_text()
    assert not (remotes / "im/kvm-probes.d").exists()
    assert manifest(remotes)["deploy_input"] == "file"
    assert "deploy input: file (auto: the original deploy does not read stdin)" in proc.stdout


def test_deploy_input_chosen_by_hand(remotes):
    proc = install(remotes, "--deploy-input", "file")
    assert proc.returncode == 0
    assert "deploy input: file (--deploy-input)" in proc.stdout
    assert manifest(remotes)["deploy_input"] == "file"
    stdin_mode = (remotes / "vmm/kvm/deploy").read_bytes()
    proc = install(remotes, "--deploy-input", "stdin")
    assert "write vmm/kvm/deploy (outdated)" in proc.stdout
    assert (remotes / "vmm/kvm/deploy").read_bytes() != stdin_mode
    assert manifest(remotes)["deploy_input"] == "stdin"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("cat > $DEP_FILE", True),  # OpenNebula 4+
        ("cat >$domain", True),
        ('    cat > "$file" && virsh create "$file"', True),
        ("x=1; cat - > $f", True),
        ("action_xml = XMLElement.new_s(STDIN.read)", True),
        ("cat $file > $other", False),  # reads a file, not stdin
        ("cat > $f <<EOF", False),  # a here-document
        ("cat > $f < /dev/null", False),
        ("# cat > $DEP_FILE", False),
        ("concat > x", False),
        ("virsh --connect $LIBVIRT_URI create $domain", False),  # OpenNebula 3.x
    ],
)
def test_deploy_input_detection(line, expected):
    script = f"#!/bin/bash\nsource kvmrc\n{line}\n".encode()
    assert reads_stdin(script) is expected


def test_rerun_changes_nothing(remotes):
    assert install(remotes).returncode == 0
    before = snapshot(remotes, inodes=True)
    proc = install(remotes)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes, inodes=True) == before
    changes = [line for line in proc.stdout.splitlines()[1:-1] if not line.startswith("unchanged")]
    assert changes == []


def test_rerun_after_an_opennebula_upgrade(remotes):
    assert install(remotes).returncode == 0
    kvm = remotes / "vmm" / "kvm"
    new = b"#!/bin/bash\n# OpenNebula 7\ncat > $DEP_FILE\n"
    (kvm / "deploy").write_bytes(new)  # the package manager replaces the wrapper
    (kvm / "deploy").chmod(0o750)
    before = snapshot(remotes)
    proc = install(remotes)
    assert proc.returncode == 0, proc.stderr
    assert "OpenNebula was upgraded; the new script becomes vmm/kvm/deploy.idlevm-orig" in (
        proc.stdout
    )
    after = snapshot(remotes)
    assert after["vmm/kvm/deploy.idlevm-orig"] == before["vmm/kvm/deploy"]
    assert (kvm / "deploy").read_text().startswith("#!/bin/sh\n# idlevm wrapper\n")
    assert manifest(remotes)["wrapped"]["vmm/kvm/deploy"] == hashlib.sha256(new).hexdigest()
    for action in ACTIONS[1:]:  # the others untouched
        assert after["vmm/kvm/" + action] == before["vmm/kvm/" + action]


def test_missing_wrapper_is_written_again(remotes):
    assert install(remotes).returncode == 0
    wrapper = (remotes / "vmm/kvm/save").read_bytes()
    os.unlink(str(remotes / "vmm/kvm/save"))
    proc = install(remotes)
    assert "write vmm/kvm/save (missing)" in proc.stdout
    assert (remotes / "vmm/kvm/save").read_bytes() == wrapper


def test_rerun_keeps_a_wrapper_edited_by_hand(remotes):
    assert install(remotes).returncode == 0
    with open(str(remotes / "vmm/kvm/restore"), "a") as wrapper:
        wrapper.write("# local change\n")
    before = snapshot(remotes, inodes=True)
    proc = install(remotes)
    assert proc.returncode == 1
    assert "error: vmm/kvm/restore was edited by hand since the install" in proc.stderr
    assert snapshot(remotes, inodes=True) == before


def test_dry_run_changes_nothing(remotes):
    before = snapshot(remotes, inodes=True)
    proc = install(remotes, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes, inodes=True) == before
    assert "would wrap vmm/kvm/deploy (original kept as vmm/kvm/deploy.idlevm-orig)" in proc.stdout
    assert "would write im/kvm-probes.d/vm/monitor/idle.sh (missing)" in proc.stdout
    assert "dry run: nothing changed" in proc.stdout
    assert install(remotes).returncode == 0
    before = snapshot(remotes, inodes=True)
    proc = install(remotes, "--uninstall", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes, inodes=True) == before
    assert "would restore vmm/kvm/save from vmm/kvm/save.idlevm-orig" in proc.stdout
    assert "would remove idlevm-lib/" in proc.stdout


def test_a_directory_in_the_way_is_reported_plainly(remotes):
    (remotes / "vmm/kvm/save.idlevm-orig").mkdir()
    before = snapshot(remotes, inodes=True)
    proc = install(remotes)
    assert proc.returncode == 1
    assert proc.stderr == "error: {}: Is a directory\n".format(remotes / "vmm/kvm/save.idlevm-orig")
    assert snapshot(remotes, inodes=True) == before


def unprivileged_python():
    """(python, preexec) to run the installer without write access to a root-owned tree."""
    if os.geteuid() != 0:
        return sys.executable, None
    # nobody must be able to run it: not a Python under /root
    found = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")
    return found, lambda: (os.setgid(65534), os.setuid(65534))


def test_permission_denied_is_reported_plainly():
    python, preexec = unprivileged_python()
    if python is None:
        pytest.skip("no Python that user nobody can run")
    base = Path(tempfile.mkdtemp(prefix="idlevm-install-"))  # not under a 0700 folder
    try:
        base.chmod(0o755)
        remotes = make_remotes(base / "remotes")
        if preexec is None:
            for folder, _, _ in os.walk(str(remotes)):
                os.chmod(folder, 0o555)
        before = snapshot(remotes, inodes=True)
        command = [python, "-m", "idlevm.host.install", "--remotes", str(remotes)]
        proc = subprocess.run(
            command,
            cwd="/",
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            capture_output=True,
            text=True,
            preexec_fn=preexec,
            timeout=60,
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"error: {remotes}")
        assert "Permission denied" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert snapshot(remotes, inodes=True) == before
    finally:
        for folder, _, _ in os.walk(str(base)):
            os.chmod(folder, 0o755)
        shutil.rmtree(str(base))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_files_take_the_owner_of_their_folder_when_run_as_root(remotes):
    for folder, _, files in os.walk(str(remotes)):
        for name in [folder] + [os.path.join(folder, f) for f in files]:
            os.chown(name, 1234, 1234)
    assert install(remotes).returncode == 0
    for path in ["vmm/kvm/deploy", CURRENT_PROBES[0], "idlevm-lib/idlevm/host/vmm.py"]:
        info = (remotes / path).stat()
        assert (info.st_uid, info.st_gid) == (1234, 1234), path


# ---------------------------------------------------------------- uninstall


def test_uninstall_restores_everything_exactly(remotes):
    before = snapshot(remotes)
    assert install(remotes).returncode == 0
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes) == before
    assert "restore vmm/kvm/deploy from vmm/kvm/deploy.idlevm-orig" in proc.stdout
    assert "remove probe im/kvm-probes.d/host/system/idle.sh" in proc.stdout
    assert "onehost sync --force" in proc.stdout.splitlines()[-1]


WARNING = "warning: every VM deployed while idlevm was installed has a serial port"


@pytest.mark.parametrize("dry_run", [False, True])
def test_uninstall_warns_that_vms_deployed_with_the_serial_port_cannot_restore(remotes, dry_run):
    # Their checkpoint and live-migration domain name the FIFOs, which nothing will make.
    assert install(remotes).returncode == 0
    proc = install(remotes, "--uninstall", *(["--dry-run"] if dry_run else []))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(WARNING)
    flat = " ".join(proc.stderr.split())
    assert "/tmp/vm_serial/one<ID>.in/.out" in flat
    assert "resuming a suspended or stopped VM, or migrating one, FAILS" in flat
    assert "Uninstall only when none of them will be restored or migrated" in flat
    assert "power them off and resume them" in flat
    assert "gone after a host reboot" in flat
    assert WARNING not in proc.stdout
    assert WARNING not in install(remotes).stderr  # installing says nothing of the kind


def test_uninstall_warns_even_when_it_refuses(remotes):
    assert install(remotes).returncode == 0
    (remotes / "vmm/kvm/cancel").write_text("#!/bin/bash\n# new cancel\n")
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert WARNING in proc.stderr


def test_uninstall_without_a_wrapped_deploy_has_nothing_to_warn_about(remotes):
    (remotes / "vmm/kvm/deploy").unlink()  # no deploy: no VM got the serial port from us
    assert install(remotes).returncode == 0
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_uninstall_refuses_a_wrapper_edited_by_hand(remotes):
    before = snapshot(remotes)
    assert install(remotes).returncode == 0
    with open(str(remotes / "vmm/kvm/save"), "a") as wrapper:
        wrapper.write("# local change\n")
    edited = (remotes / "vmm/kvm/save").read_bytes()
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert "vmm/kvm/save was edited by hand: not overwritten" in proc.stderr
    assert (remotes / "vmm/kvm/save").read_bytes() == edited
    assert (remotes / "vmm/kvm/save.idlevm-orig").exists()
    assert (remotes / "idlevm-lib/MANIFEST").exists()  # needed to finish later
    after = snapshot(remotes)
    for action in ACTIONS:
        if action != "save":
            assert after["vmm/kvm/" + action] == before["vmm/kvm/" + action]
    # the operator puts the original back by hand; a rerun finishes
    os.replace(str(remotes / "vmm/kvm/save.idlevm-orig"), str(remotes / "vmm/kvm/save"))
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes) == before


def test_uninstall_refuses_a_changed_original(remotes):
    assert install(remotes).returncode == 0
    (remotes / "vmm/kvm/deploy.idlevm-orig").write_text("#!/bin/sh\n# changed\n")
    wrapper = (remotes / "vmm/kvm/deploy").read_bytes()
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert "vmm/kvm/deploy.idlevm-orig changed since the install" in proc.stderr
    assert (remotes / "vmm/kvm/deploy").read_bytes() == wrapper


def test_uninstall_keeps_a_script_an_upgrade_put_there(remotes):
    assert install(remotes).returncode == 0
    (remotes / "vmm/kvm/cancel").write_text("#!/bin/bash\n# new cancel\n")
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert "vmm/kvm/cancel was replaced since the install (upgrade?)" in proc.stderr
    assert (remotes / "vmm/kvm/cancel").read_text() == "#!/bin/bash\n# new cancel\n"


def test_uninstall_refuses_an_edited_probe(remotes):
    assert install(remotes).returncode == 0
    with open(str(remotes / CURRENT_PROBES[1]), "a") as probe:
        probe.write("# mine\n")
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert CURRENT_PROBES[1] + " was edited by hand: not removed" in proc.stderr
    assert (remotes / CURRENT_PROBES[1]).exists()
    assert not (remotes / CURRENT_PROBES[0]).exists()


def test_uninstall_without_an_install(remotes):
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert "no idlevm-lib/MANIFEST: idlevm is not installed" in proc.stderr


def test_uninstall_with_a_damaged_manifest(remotes):
    assert install(remotes).returncode == 0
    (remotes / "idlevm-lib/MANIFEST").write_text("{not json")
    proc = install(remotes, "--uninstall")
    assert proc.returncode == 1
    assert "idlevm-lib/MANIFEST is damaged" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- refusals and errors


@pytest.mark.parametrize(
    "link, target",
    [
        ("vmm/kvm/deploy", "outside/deploy"),
        ("vmm/kvm/save.idlevm-orig", "outside/save"),
        ("im/kvm-probes.d/vm/monitor", "outside"),
        ("idlevm-lib", "outside"),
    ],
)
def test_symlinks_are_refused(tmp_path, link, target):
    remotes = make_remotes(tmp_path / "remotes")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("deploy", "save"):
        (outside / name).write_text("#!/bin/sh\n# outside\n")
    path = remotes / link
    if path.is_dir():
        shutil.rmtree(str(path))
    elif path.exists():
        path.unlink()
    os.symlink(str(tmp_path / target), str(path))
    before, outside_before = snapshot(remotes, inodes=True), snapshot(outside, inodes=True)
    proc = install(remotes)
    assert proc.returncode == 1
    assert f"error: {link} is a symbolic link: refusing to write through it" in proc.stderr
    assert snapshot(remotes, inodes=True) == before
    assert snapshot(outside, inodes=True) == outside_before


def test_a_foreign_probe_is_not_replaced(remotes):
    (remotes / CURRENT_PROBES[0]).write_text("#!/bin/sh\necho SOMEONE_ELSE=1\n")
    before = snapshot(remotes, inodes=True)
    proc = install(remotes)
    assert proc.returncode == 1
    assert "is not ours: refusing to replace it" in proc.stderr
    assert snapshot(remotes, inodes=True) == before


def test_wrapper_without_its_original_is_refused(remotes):
    assert install(remotes).returncode == 0
    os.unlink(str(remotes / "vmm/kvm/restore.idlevm-orig"))
    proc = install(remotes)
    assert proc.returncode == 1
    assert "vmm/kvm/restore is our wrapper but vmm/kvm/restore.idlevm-orig is missing" in (
        proc.stderr
    )


@pytest.mark.parametrize(
    "remove, message",
    [
        ("", "remotes folder {root} not found"),
        ("vmm", "{root} has no vmm/kvm"),
        ("im", "no probe folder in {root}: neither im/kvm.d (OpenNebula 3.x) nor"),
        ("im/kvm-probes.d/vm", "im/kvm-probes.d without host/system and vm/monitor"),
    ],
)
def test_layout_errors(remotes, remove, message):
    target = remotes / remove if remove else remotes
    shutil.rmtree(str(target))
    proc = install(remotes)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: " + message.format(root=remotes))
    assert "Traceback" not in proc.stderr


def test_usage_error(remotes):
    proc = install(remotes, "--deploy-input", "pipe")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


# ---------------------------------------------------------------- Python 3.6


def test_installer_runs_on_python_3_6(remotes, python36):
    # vermin (tests/agent/test_py36.py) checks the source; this runs it.
    before = snapshot(remotes)
    proc = install(remotes, python=python36)
    assert proc.returncode == 0, proc.stderr
    assert manifest(remotes)["deploy_input"] == "stdin"
    proc = install(remotes, "--uninstall", python=python36)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(remotes) == before
