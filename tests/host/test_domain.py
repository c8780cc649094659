"""Adding the serial port to OpenNebula-generated libvirt domain XML, byte for byte."""

import os
import stat
import time
from pathlib import Path

import pytest

from idlevm.host.domain import (
    ADDED,
    ALREADY_PRESENT,
    FOREIGN_PATH,
    PORT_TAKEN,
    DomainError,
    add_serial,
    foreign_path,
    rewrite_domain_file,
    serial_element,
)

DATA = Path(__file__).parent / "data"
BASE = "/tmp/vm_serial/one42"
OURS = "<serial type='pipe'><source path='/tmp/vm_serial/one42'/><target port='0'/></serial>"
FREE_PORT_FIXTURES = ["one-6.x-deployment.0", "one-5.x-deployment.0", "one-3.x-deployment.0"]
TAKEN_PORT_FIXTURES = ["serial-pty.0", "console-pty.0"]


def fixture(name):
    return (DATA / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", FREE_PORT_FIXTURES)
def test_added_serial_is_the_only_change_to_the_file(name):
    original = fixture(name)
    new, outcome = add_serial(original, BASE)

    assert outcome == ADDED
    assert new.count(OURS) == 1
    assert new.replace("\t\t" + OURS + "\n", "", 1) == original
    # It went in the <devices> element, right before its end tag.
    assert "\t\t" + OURS + "\n\t</devices>" in new


def test_namespaces_comments_and_cdata_are_kept():
    new, _ = add_serial(fixture("one-6.x-deployment.0"), BASE)
    assert "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'" in new
    assert "<qemu:arg value='kvm-pit.lost_tick_policy=discard'/>" in new
    assert '<one:vm xmlns:one="http://opennebula.org/xmlns/libvirt/1.0">' in new
    assert "<emulator><![CDATA[/usr/bin/qemu-kvm-one]]></emulator>" in new
    assert "ns0" not in new


def test_second_run_changes_nothing():
    once, _ = add_serial(fixture("one-6.x-deployment.0"), BASE)
    twice, outcome = add_serial(once, BASE)
    assert outcome == ALREADY_PRESENT
    assert twice == once


@pytest.mark.parametrize("name", TAKEN_PORT_FIXTURES)
def test_domain_with_its_own_serial_port_or_console_is_left_alone(name):
    original = fixture(name)
    assert add_serial(original, BASE) == (original, PORT_TAKEN)


@pytest.mark.parametrize(
    "device",
    [
        "<serial type='pty'/>",  # no target: libvirt gives it port 0
        "<serial type='file'><source path='/var/log/x'/><target type='isa-serial' port='0'/>"
        "</serial>",
        "<serial type='pipe'><source path='/srv/pipes/one42'/><target port='0'/></serial>",
        "<console type='pty'><target type='serial'/></console>",
        "<console type='pty'><target port='0'/></console>",
    ],
)
def test_any_claim_on_serial_port_0_takes_the_port(device):
    xml = f"<domain type='kvm'><devices>{device}</devices></domain>"
    assert add_serial(xml, BASE) == (xml, PORT_TAKEN)


@pytest.mark.parametrize(
    "device",
    [
        "<serial type='pty'><target port='1'/></serial>",
        "<console type='pty'><target type='virtio' port='0'/></console>",
        "<disk type='file' device='disk'><source file='/d'/><target dev='vda'/></disk>",
    ],
)
def test_other_devices_leave_serial_port_0_free(device):
    xml = f"<domain type='kvm'><devices>{device}</devices></domain>"
    new, outcome = add_serial(xml, BASE)
    assert outcome == ADDED
    assert new == f"<domain type='kvm'><devices>{device}{OURS}</devices></domain>"


@pytest.mark.parametrize(
    ("device", "path"),
    [
        # another VM's FIFOs, on port 0 or another port, whole or .in/.out, any device kind
        (
            "<serial type='pipe'><source path='/tmp/vm_serial/one2'/><target port='0'/></serial>",
            "/tmp/vm_serial/one2",
        ),
        (
            "<serial type='pipe'><source path='/tmp/vm_serial/one2'/><target port='1'/></serial>",
            "/tmp/vm_serial/one2",
        ),
        (
            "<channel type='pipe'><source path='/tmp/vm_serial/one2'/>"
            "<target type='virtio' name='x'/></channel>",
            "/tmp/vm_serial/one2",
        ),
        (
            "<console type='file'><source path='/tmp/vm_serial/one2.out'/>"
            "<target type='virtio'/></console>",
            "/tmp/vm_serial/one2.out",
        ),
        (
            "<parallel type='file'><source path='/tmp/vm_serial/one2.out'/>"
            "<target port='0'/></parallel>",
            "/tmp/vm_serial/one2.out",
        ),
        (
            "<serial type='pty'><log file='/tmp/vm_serial/one2.out'/><target port='1'/></serial>",
            "/tmp/vm_serial/one2.out",
        ),
        (
            "<disk type='file'><source file='/tmp/vm_serial/one2.in'/><target dev='vdb'/></disk>",
            "/tmp/vm_serial/one2.in",
        ),
        # the same path written otherwise
        (
            "<serial type='pipe'><source path='/tmp//vm_serial/./x/../one2'/>"
            "<target port='1'/></serial>",
            "/tmp/vm_serial/one2",
        ),
        (
            "<serial type='pipe'><source path='&#47;tmp&#x2F;vm_serial/one2'/>"
            "<target port='1'/></serial>",
            "/tmp/vm_serial/one2",
        ),
        # our own FIFOs, in a second device: two readers would garble the data
        (
            "<serial type='pipe'><source path='/tmp/vm_serial/one42'/><target port='1'/></serial>",
            "/tmp/vm_serial/one42",
        ),
        # the directory itself, or a state file
        (
            "<filesystem><source dir='/tmp/vm_serial'/><target dir='x'/></filesystem>",
            "/tmp/vm_serial",
        ),
        (
            "<serial type='file'><source path='/tmp/vm_serial/.state/cache'/>"
            "<target port='1'/></serial>",
            "/tmp/vm_serial/.state/cache",
        ),
    ],
)
def test_a_path_in_the_fifo_directory_outside_our_device_leaves_the_domain_alone(device, path):
    xml = f"<domain type='kvm'><devices>{device}</devices></domain>"
    assert add_serial(xml, BASE) == (xml, FOREIGN_PATH)
    assert foreign_path(xml, BASE) == path


def test_a_path_in_a_qemu_argument_or_element_text_is_seen():
    qemu = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
    argument = (
        f"<domain type='kvm' {qemu}><devices/><qemu:commandline><qemu:arg value='-chardev'/>"
        "<qemu:arg value='pipe,id=steal,path=/tmp/vm_serial/one2'/></qemu:commandline></domain>"
    )
    assert add_serial(argument, BASE) == (argument, FOREIGN_PATH)
    assert foreign_path(argument, BASE) == "/tmp/vm_serial/one2"
    kernel = (
        "<domain type='kvm'><os><kernel>/tmp/vm_serial/one2.out</kernel></os><devices/></domain>"
    )
    assert add_serial(kernel, BASE) == (kernel, FOREIGN_PATH)


def test_a_foreign_path_wins_over_our_own_device_being_there():
    ours, _ = add_serial("<domain type='kvm'><devices/></domain>", BASE)
    assert foreign_path(ours, BASE) is None  # our own device is not foreign
    stolen = ours.replace(
        "</devices>",
        "<channel type='pipe'><source path='/tmp/vm_serial/one2'/></channel></devices>",
    )
    assert add_serial(stolen, BASE) == (stolen, FOREIGN_PATH)


@pytest.mark.parametrize(
    "xml",
    [
        # free text libvirt never opens: a user's VM name or template may say anything
        "<domain><title>/tmp/vm_serial/one2</title><description>/tmp/vm_serial/one2.out"
        "</description><devices/><metadata><one:vm xmlns:one='urn:x'><one:name>"
        "/tmp/vm_serial/one2</one:name><one:p path='/tmp/vm_serial/one2'/></one:vm>"
        "</metadata></domain>",
        # neighbours of the directory are not in it
        "<domain><devices><serial type='file'><source path='/tmp/vm_serial2/one2'/>"
        "<target port='1'/></serial><disk><source file='/tmp/vm_serial.img'/></disk>"
        "</devices></domain>",
        # relative paths are not absolute ones
        "<domain><devices><disk><source file='tmp/vm_serial/one2'/></disk></devices></domain>",
    ],
)
def test_free_text_and_other_paths_do_not_stop_the_serial_port(xml):
    assert foreign_path(xml, BASE) is None
    assert add_serial(xml, BASE)[1] == ADDED


def test_fifo_directory_at_the_root_claims_only_its_entries():
    # A FIFO directory / (a test setup, never a host's) does not make every path foreign.
    xml = "<domain><devices><emulator>/usr/bin/kvm</emulator></devices></domain>"
    assert add_serial(xml, "/one42")[1] == ADDED
    xml = "<domain><devices><serial type='file'><source path='/one2.out'/></serial></devices>"
    xml += "</domain>"
    assert add_serial(xml, "/one42") == (xml, FOREIGN_PATH)


def test_rewrite_reports_the_foreign_path_and_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "deployment.0"
    original = fixture("one-6.x-deployment.0").replace(
        "</devices>",
        "<serial type='pipe'><source path='/tmp/vm_serial/one2'/><target port='1'/></serial>"
        "</devices>",
    )
    path.write_text(original, encoding="utf-8")
    before = os.stat(str(path))
    assert rewrite_domain_file(str(path), BASE) == (FOREIGN_PATH, "/tmp/vm_serial/one2")
    after = os.stat(str(path))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_text(encoding="utf-8") == original


def test_targets_outside_serial_devices_are_not_mistaken_for_ports():
    xml = (
        "<domain type='kvm'><devices><serial type='pty'><target port='1'/></serial>"
        "<disk type='file'><target dev='vda'/></disk></devices>"
        "<cpu><numa><cell id='0' cpus='0' memory='1'/></numa></cpu></domain>"
    )
    assert add_serial(xml, BASE)[1] == ADDED


def test_empty_devices_element_is_opened():
    xml = "<domain type='kvm'>\n  <devices />\n</domain>\n"
    new, outcome = add_serial(xml, BASE)
    assert outcome == ADDED
    assert new == f"<domain type='kvm'>\n  <devices>{OURS}</devices>\n</domain>\n"


def test_missing_devices_element_is_added_last_in_domain():
    xml = "<domain type='kvm'>\n\t<name>one-42</name>\n</domain>\n"
    new, outcome = add_serial(xml, BASE)
    assert outcome == ADDED
    assert (
        new
        == f"<domain type='kvm'>\n\t<name>one-42</name>\n\t<devices>{OURS}</devices>\n</domain>\n"
    )


def test_closing_tag_in_a_comment_or_cdata_is_not_the_insertion_point():
    xml = (
        "<domain type='kvm'>\n\t<!-- </devices> -->\n\t<devices>\n"
        "\t\t<emulator><![CDATA[/usr/bin/kvm</devices>]]></emulator>\n\t</devices>\n</domain>\n"
    )
    new, _ = add_serial(xml, BASE)
    assert new == xml.replace("\t</devices>\n</domain>", f"\t\t{OURS}\n\t</devices>\n</domain>")


def test_crlf_files_get_a_crlf_line():
    xml = (
        "<domain type='kvm'>\r\n  <devices>\r\n    <emulator>/x</emulator>\r\n"
        "  </devices>\r\n</domain>"
    )
    new, _ = add_serial(xml, BASE)
    assert new == xml.replace("  </devices>", f"    {OURS}\r\n  </devices>")


@pytest.mark.parametrize(
    ("base", "attribute"),
    [
        ("/srv/a&b/one42", "/srv/a&amp;b/one42"),
        ("/srv/it's/one42", "/srv/it&apos;s/one42"),
        ('/srv/"<x>"/one42', "/srv/&quot;&lt;x&gt;&quot;/one42"),
        ("/srv/a\tb/one42", "/srv/a&#9;b/one42"),
    ],
)
def test_path_is_escaped_for_the_attribute(base, attribute):
    assert f"<source path='{attribute}'/>" in serial_element(base)
    new, _ = add_serial(fixture("one-3.x-deployment.0"), base)
    assert f"<source path='{attribute}'/>" in new
    assert add_serial(new, base) == (new, ALREADY_PRESENT)  # read back as the same path


def test_path_that_xml_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="cannot appear in XML"):
        add_serial(fixture("one-3.x-deployment.0"), "/srv/\x01/one42")


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domain type='kvm'><devices></domain>", "malformed XML: mismatched tag"),
        ("", "malformed XML: no element found"),
        ("<domain type='kvm'><devices/></domain><domain/>", "malformed XML: junk after"),
        ("<network><name>x</name></network>", "root element is <network>, not <domain>"),
        ("<domain type='kvm'/>", "<domain> is empty"),
        ("<domain><devices/><devices/></domain>", "more than one <devices>"),
        ("<!DOCTYPE domain><domain><devices/></domain>", "DOCTYPE or entity declarations"),
        (
            '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>',
            "DOCTYPE or entity declarations",
        ),
    ],
)
def test_malformed_or_foreign_xml_is_refused(xml, message):
    with pytest.raises(DomainError, match=message):
        add_serial(xml, BASE)


def test_entity_expansion_bomb_is_refused_at_once():
    lol = "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10)
    )
    bomb = f"<!DOCTYPE domain [{lol}]><domain><devices>&l9;</devices></domain>"
    started = time.monotonic()
    with pytest.raises(DomainError, match="DOCTYPE"):
        add_serial(bomb, BASE)
    assert time.monotonic() - started < 1


def test_rewrite_replaces_the_file_keeping_mode_and_owner(tmp_path):
    path = tmp_path / "deployment.0"
    path.write_bytes((DATA / "one-6.x-deployment.0").read_bytes())
    path.chmod(0o640)
    before = os.stat(str(path))

    assert rewrite_domain_file(str(path), BASE) == (ADDED, None)
    after = os.stat(str(path))
    assert after.st_ino != before.st_ino  # replaced by rename, never half-written in place
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert OURS in path.read_text()
    assert os.listdir(str(tmp_path)) == ["deployment.0"]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")
def test_rewrite_by_root_leaves_the_file_to_its_owner(tmp_path):
    path = tmp_path / "deployment.0"
    path.write_bytes((DATA / "one-3.x-deployment.0").read_bytes())
    os.chown(str(path), 65534, 65534)
    assert rewrite_domain_file(str(path), BASE) == (ADDED, None)
    assert (os.stat(str(path)).st_uid, os.stat(str(path)).st_gid) == (65534, 65534)


@pytest.mark.parametrize("name", TAKEN_PORT_FIXTURES)
def test_rewrite_leaves_an_unchanged_domain_untouched(tmp_path, name):
    path = tmp_path / "deployment.0"
    path.write_bytes((DATA / name).read_bytes())
    before = os.stat(str(path))
    assert rewrite_domain_file(str(path), BASE) == (PORT_TAKEN, None)
    after = os.stat(str(path))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_rewrite_refuses_a_symlink_and_keeps_its_target(tmp_path):
    target = tmp_path / "real.xml"
    target.write_bytes((DATA / "one-3.x-deployment.0").read_bytes())
    link = tmp_path / "deployment.0"
    link.symlink_to(target)
    with pytest.raises(DomainError, match="is a symlink: refused"):
        rewrite_domain_file(str(link), BASE)
    assert target.read_bytes() == (DATA / "one-3.x-deployment.0").read_bytes()
    assert os.path.islink(str(link))


def test_rewrite_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "deployment.0"
    path.write_bytes(b"<domain><name>caf\xe9</name><devices/></domain>")
    with pytest.raises(DomainError, match="not UTF-8"):
        rewrite_domain_file(str(path), BASE)
    assert path.read_bytes() == b"<domain><name>caf\xe9</name><devices/></domain>"
