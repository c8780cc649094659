"""The FIFO directory and the FIFOs: real files, modes and owners on disk."""

import os
import re
import stat

import pytest

from idlevm.host.fifo import (
    HostSetupError,
    fifo_paths,
    fifo_vm_id,
    parse_vm_id,
    prepare_fifos,
    remove_fifos,
)

OTHER_UID = 65534  # nobody
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def snapshot(directory):
    """name -> (kind bits, mode, inode) of everything in `directory`, symlinks not followed."""
    found = {}
    for name in os.listdir(directory):
        st = os.lstat(os.path.join(directory, name))
        found[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_ino)
    return found


@pytest.fixture
def fifo_dir(tmp_path):
    return str(tmp_path / "vm_serial")


def test_prepare_creates_a_private_directory_and_private_fifos(fifo_dir):
    prepare_fifos(fifo_dir, 42)

    assert stat.S_ISDIR(os.lstat(fifo_dir).st_mode)
    assert mode_of(fifo_dir) == 0o700
    assert fifo_paths(fifo_dir, 42) == (fifo_dir + "/one42.in", fifo_dir + "/one42.out")
    for path in fifo_paths(fifo_dir, 42):
        st = os.lstat(path)
        assert stat.S_ISFIFO(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600  # no group: it could speak for the VM
        assert st.st_uid == os.geteuid()
    assert sorted(os.listdir(fifo_dir)) == ["one42.in", "one42.out"]


@pytest.mark.parametrize("umask", [0o000, 0o002, 0o022, 0o077])
def test_prepare_sets_exact_modes_whatever_the_umask(fifo_dir, umask):
    old = os.umask(umask)
    try:
        prepare_fifos(fifo_dir, 7)
    finally:
        os.umask(old)
    assert mode_of(fifo_dir) == 0o700
    assert [mode_of(path) for path in fifo_paths(fifo_dir, 7)] == [0o600, 0o600]


def test_prepare_twice_reuses_the_same_fifos_and_reports_it(fifo_dir):
    first = []
    prepare_fifos(fifo_dir, 42, report=first.append)
    before = snapshot(fifo_dir)
    second = []
    prepare_fifos(fifo_dir, 42, report=second.append)

    assert snapshot(fifo_dir) == before
    assert first == [
        f"created directory {fifo_dir} (0700)",
        f"created FIFO {fifo_dir}/one42.in (0600)",
        f"created FIFO {fifo_dir}/one42.out (0600)",
    ]
    assert second == [
        f"FIFO {fifo_dir}/one42.in exists: reused",
        f"FIFO {fifo_dir}/one42.out exists: reused",
    ]


def test_prepare_takes_group_access_away_from_our_own_fifo(fifo_dir):
    # FIFOs made 0660 by an earlier version, or chmod'ed by hand, become private again.
    prepare_fifos(fifo_dir, 42)
    os.chmod(fifo_dir + "/one42.out", 0o660)
    messages = []
    prepare_fifos(fifo_dir, 42, report=messages.append)
    assert mode_of(fifo_dir + "/one42.out") == 0o600
    assert f"FIFO {fifo_dir}/one42.out exists: reused, mode set to 0600" in messages


def test_prepare_keeps_an_existing_safe_directory_as_it_is(fifo_dir):
    # e.g. made 0750 by an earlier version: nobody but us can write in it, so it is safe
    os.mkdir(fifo_dir, 0o750)
    os.chmod(fifo_dir, 0o750)
    prepare_fifos(fifo_dir, 3)
    assert mode_of(fifo_dir) == 0o750
    assert stat.S_ISFIFO(os.lstat(fifo_dir + "/one3.out").st_mode)


def test_prepare_refuses_a_symlinked_directory_and_creates_nothing(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "vm_serial"
    link.symlink_to(real)

    for given in (str(link), str(link) + "/"):  # a trailing slash must not follow it either
        with pytest.raises(HostSetupError, match="is a symlink: refused"):
            prepare_fifos(given, 42)
    assert os.listdir(str(real)) == []
    assert os.path.islink(str(link))


def test_prepare_refuses_a_dangling_symlink_and_does_not_create_its_target(tmp_path):
    target = tmp_path / "planted"
    (tmp_path / "vm_serial").symlink_to(target)
    with pytest.raises(HostSetupError, match="symlink"):
        prepare_fifos(str(tmp_path / "vm_serial"), 42)
    assert not os.path.lexists(str(target))


@pytest.mark.parametrize("mode", [0o770, 0o757, 0o1777, 0o720])
def test_prepare_refuses_a_directory_others_can_write(fifo_dir, mode):
    os.mkdir(fifo_dir)
    os.chmod(fifo_dir, mode)
    with pytest.raises(HostSetupError, match=f"writable by group or others \\(mode {mode:04o}\\)"):
        prepare_fifos(fifo_dir, 42)
    assert os.listdir(fifo_dir) == []


@needs_root
def test_prepare_refuses_a_directory_owned_by_another_user(fifo_dir):
    os.mkdir(fifo_dir, 0o700)
    os.chown(fifo_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(HostSetupError, match=f"owned by uid {OTHER_UID}, not by us"):
        prepare_fifos(fifo_dir, 42)
    assert os.listdir(fifo_dir) == []


def test_prepare_refuses_a_file_where_the_directory_should_be(fifo_dir):
    with open(fifo_dir, "w") as planted:
        planted.write("x")
    with pytest.raises(HostSetupError, match="is a regular file, not a directory"):
        prepare_fifos(fifo_dir, 42)
    with open(fifo_dir) as planted:
        assert planted.read() == "x"


def test_prepare_refuses_a_regular_file_at_a_fifo_path_and_leaves_it(fifo_dir):
    os.mkdir(fifo_dir, 0o700)
    with open(fifo_dir + "/one42.out", "w") as planted:
        planted.write("keep me")
    os.chmod(fifo_dir + "/one42.out", 0o644)

    with pytest.raises(
        HostSetupError, match=re.escape("one42.out exists and is a regular file, not a FIFO")
    ):
        prepare_fifos(fifo_dir, 42)
    with open(fifo_dir + "/one42.out") as planted:
        assert planted.read() == "keep me"
    assert mode_of(fifo_dir + "/one42.out") == 0o644


def test_prepare_does_not_follow_a_symlink_at_a_fifo_path(fifo_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    victim.chmod(0o600)
    os.mkdir(fifo_dir, 0o700)
    os.symlink(str(victim), fifo_dir + "/one42.out")

    with pytest.raises(
        HostSetupError, match=re.escape("one42.out exists and is a symlink, not a FIFO")
    ):
        prepare_fifos(fifo_dir, 42)
    assert victim.read_text() == "precious"
    assert mode_of(str(victim)) == 0o600
    assert os.readlink(fifo_dir + "/one42.out") == str(victim)


def test_prepare_refuses_a_directory_at_a_fifo_path(fifo_dir):
    os.makedirs(fifo_dir + "/one42.in")
    os.chmod(fifo_dir, 0o700)
    with pytest.raises(HostSetupError, match=re.escape("one42.in exists and is a directory")):
        prepare_fifos(fifo_dir, 42)
    assert os.path.isdir(fifo_dir + "/one42.in")
    assert not os.path.lexists(fifo_dir + "/one42.out")  # refused before going on


@needs_root
def test_prepare_refuses_a_fifo_owned_by_another_user(fifo_dir):
    prepare_fifos(fifo_dir, 42)
    os.chown(fifo_dir + "/one42.out", OTHER_UID, OTHER_UID)
    with pytest.raises(HostSetupError, match=f"FIFO owned by uid {OTHER_UID}, not by us"):
        prepare_fifos(fifo_dir, 42)
    assert os.lstat(fifo_dir + "/one42.out").st_uid == OTHER_UID


@pytest.mark.parametrize(
    ("text", "expected"), [("0", 0), ("7", 7), ("42", 42), ("999999999", 999999999)]
)
def test_parse_vm_id_accepts_canonical_ids(text, expected):
    assert parse_vm_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "042", "00", "-1", "+1", " 1", "1 ", "1\n", "1.0", "1e3", "1000000000", "\u0664\u0662"],
)
def test_parse_vm_id_refuses_anything_else(text):
    with pytest.raises(ValueError, match="invalid VM id"):
        parse_vm_id(text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("one0.out", 0), ("one42.out", 42), ("one999999999.out", 999999999)],
)
def test_fifo_vm_id_reads_canonical_out_names(name, expected):
    assert fifo_vm_id(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "one42.in",  # the host's side, not the VM's
        "one42",
        "one42.out.bak",
        "one42.out.",
        "one042.out",
        "one00.out",
        "one-1.out",
        "one+1.out",
        "one 42.out",
        "one42 .out",
        "one.out",
        "one1000000000.out",
        "one\u0664\u0662.out",  # digits of another script
        "One42.out",
        "two42.out",
        "xone42.out",
        "one42.OUT",
        "one42.out\n",
        ".one42.out",
        "",
    ],
)
def test_fifo_vm_id_refuses_every_other_name(name):
    assert fifo_vm_id(name) is None


def test_fifo_vm_id_reads_back_the_names_prepare_makes(fifo_dir):
    for vm_id in (0, 7, 42, 999999999):
        prepare_fifos(fifo_dir, vm_id)
    ids = [fifo_vm_id(name) for name in os.listdir(fifo_dir)]
    assert sorted(i for i in ids if i is not None) == [0, 7, 42, 999999999]
    assert ids.count(None) == 4  # the .in FIFOs


def test_remove_fifos_removes_both_and_leaves_other_files(fifo_dir):
    prepare_fifos(fifo_dir, 42)
    prepare_fifos(fifo_dir, 43)
    with open(fifo_dir + "/notes", "w") as other:
        other.write("x")

    assert remove_fifos(fifo_dir, 42) == [fifo_dir + "/one42.in", fifo_dir + "/one42.out"]
    assert sorted(os.listdir(fifo_dir)) == ["notes", "one43.in", "one43.out"]
    assert remove_fifos(fifo_dir, 42) == []  # idempotent


def test_remove_fifos_without_a_directory_removes_nothing(fifo_dir):
    assert remove_fifos(fifo_dir, 42) == []
    assert not os.path.lexists(fifo_dir)


def test_remove_fifos_refuses_a_regular_file_and_removes_neither(fifo_dir):
    prepare_fifos(fifo_dir, 42)
    os.unlink(fifo_dir + "/one42.out")
    with open(fifo_dir + "/one42.out", "w") as planted:
        planted.write("keep me")

    with pytest.raises(HostSetupError, match=re.escape("one42.out is a regular file, not a FIFO")):
        remove_fifos(fifo_dir, 42)
    assert sorted(os.listdir(fifo_dir)) == ["one42.in", "one42.out"]


def test_remove_fifos_refuses_a_symlinked_directory(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    prepare_fifos(str(real), 42)
    (tmp_path / "vm_serial").symlink_to(real)
    with pytest.raises(HostSetupError, match="symlink"):
        remove_fifos(str(tmp_path / "vm_serial"), 42)
    assert sorted(os.listdir(str(real))) == ["one42.in", "one42.out"]
