"""Gives a libvirt domain XML the serial port 0 on the VM's FIFOs.

The XML is parsed only to inspect it; the change is a text insertion before the closing
</devices>. Re-serialising with ElementTree would rename the qemu:/one: prefixes to ns0:,
drop comments and reformat the file; OpenNebula and libvirt read it after us.

The device added is

    <serial type='pipe'><source path='DIR/one<ID>'/><target port='0'/></serial>

and no <console>: for a serial port 0 libvirt adds the console alias (virsh console) itself.

A domain that already has a serial port 0 (or a serial <console>, which libvirt turns into
one) keeps it: the VM then gets no idle serial port, which is reported, not an error. So does
a domain that names a path in the FIFO directory anywhere but in our own device (another
VM's /tmp/vm_serial/one2, say): QEMU would write that VM's .out and read its .in, speaking for
it, and a second device on our own FIFOs would garble the data.
"""

import contextlib
import errno
import os
import posixpath
import re
import stat
import tempfile
import xml.parsers.expat
from typing import Dict, List, Optional, Tuple

ADDED = "added"
ALREADY_PRESENT = "already-present"
PORT_TAKEN = "port-taken"
FOREIGN_PATH = "foreign-path"

# Free text libvirt never opens as a file (OpenNebula puts the VM's name and template there).
_FREE_TEXT = frozenset({"metadata", "title", "description"})
# Where a path may start in an attribute value or a text: QEMU options put it after "=" or ","
# (`-chardev pipe,id=x,path=/tmp/vm_serial/one2`), so everything from a slash to a separator.
_PATH_IN_TEXT = re.compile(r"/[^\s,;]*")

# XML 1.0 forbids these characters even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTRIBUTE_ESCAPES = [
    ("&", "&amp;"),  # first, so the references added below are not escaped again
    ("<", "&lt;"),
    (">", "&gt;"),
    ("'", "&apos;"),
    ('"', "&quot;"),
    ("\t", "&#9;"),  # literal whitespace in an attribute value is normalised to a space
    ("\n", "&#10;"),
    ("\r", "&#13;"),
]
# An empty-element tag with optional attributes, e.g. <devices/>; values may hold '>'.
_EMPTY_TAG = r"<{}(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*/>"


class DomainError(Exception):
    """The domain XML is malformed or not a libvirt domain: it was left unchanged."""


def serial_element(pipe_base: str) -> str:
    """The <serial> element for the FIFOs pipe_base.in and pipe_base.out."""
    return (
        f"<serial type='pipe'><source path='{_attribute(pipe_base)}'/><target port='0'/></serial>"
    )


def add_serial(xml_text: str, pipe_base: str) -> Tuple[str, str]:
    """(new_xml, outcome): `xml_text` with our serial port 0 added, if it can be.

    outcome is ADDED, ALREADY_PRESENT (our device is there: unchanged), PORT_TAKEN (another
    serial port 0 or a serial console: unchanged) or FOREIGN_PATH (a path in the FIFO
    directory, the folder of `pipe_base`, named outside our device: unchanged; see
    foreign_path). Raises DomainError for XML that is malformed, declares a DOCTYPE or
    entities, or whose root is not <domain>; ValueError for a path XML cannot hold.
    """
    new_xml, outcome, _ = _add_serial(xml_text, pipe_base)
    return new_xml, outcome


def foreign_path(xml_text: str, pipe_base: str) -> Optional[str]:
    """The first path in the FIFO directory the domain names outside our own device, if any:
    in an attribute value or a text (a device's <source path>, a <log file>, a qemu:arg...),
    outside <metadata>, <title> and <description>. Paths are compared as written, after
    collapsing `//`, `.` and `..`; a symlink elsewhere that leads into the directory is not
    seen (protected_symlinks keeps QEMU from following one planted in /tmp)."""
    return _foreign_path(_scan(xml_text.encode("utf-8")), pipe_base)


def _add_serial(xml_text: str, pipe_base: str) -> Tuple[str, str, Optional[str]]:
    element = serial_element(pipe_base)  # first: a bad path fails before any inspection
    data = xml_text.encode("utf-8")
    scan = _scan(data)
    foreign = _foreign_path(scan, pipe_base)
    if foreign is not None:
        return xml_text, FOREIGN_PATH, foreign
    if any(_is_ours(device, pipe_base) for device in scan.devices):
        return xml_text, ALREADY_PRESENT, None
    if any(_takes_port_zero(device) for device in scan.devices):
        return xml_text, PORT_TAKEN, None
    return _insert(data, scan, element).decode("utf-8"), ADDED, None


def rewrite_domain_file(path: str, pipe_base: str) -> Tuple[str, Optional[str]]:
    """Add our serial port to the domain XML file `path` in place; return the outcome and,
    for FOREIGN_PATH, the path in the FIFO directory the domain names (else None).

    The file is replaced atomically (temporary file in the same directory, same mode and
    owner, rename) and only when the outcome is ADDED. Raises DomainError (a symlink or
    other non-regular file, not UTF-8, malformed XML), ValueError (see add_serial) or
    OSError (cannot read or write).
    """
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(source.fileno())
        data = source.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DomainError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        new_text, outcome, foreign = _add_serial(text, pipe_base)
    except DomainError as error:
        raise DomainError(f"{path}: {error}") from None
    if outcome == ADDED:
        _replace(path, new_text.encode("utf-8"), st)
    return outcome, foreign


class _Device:
    """A <serial> or <console> in <devices>, with its direct children (target, source)."""

    def __init__(self, tag: str, attributes: Dict[str, str]) -> None:
        self.tag = tag
        self.attributes = attributes
        self.children: List[Tuple[str, Dict[str, str]]] = []

    def child(self, tag: str) -> Optional[Dict[str, str]]:
        for name, attributes in self.children:
            if name == tag:
                return attributes
        return None


class _Scan:
    """What one parse tells: serial and console devices, the texts and attribute values that
    may name a file, and byte offsets for the edit."""

    def __init__(self) -> None:
        self.devices: List[_Device] = []
        # (device, element, attribute or "" for a text, value); the device only for the
        # <source> of a serial or console, to tell our own source path from other mentions
        self.values: List[Tuple[Optional[_Device], str, str, str]] = []
        self.texts: List[List[str]] = []  # the character data of each open element
        self.free_text_depth = 0  # > 0 inside <metadata>, <title> or <description>
        self.domain_first_child: Optional[int] = None  # "<" of the first element in <domain>
        self.domain_end: Optional[int] = None  # "<" of </domain>
        self.devices_start: Optional[int] = None  # "<" of <devices>
        self.devices_first_child: Optional[int] = None
        self.devices_end: Optional[int] = None  # "<" of </devices>
        self.current: Optional[_Device] = None  # the serial or console being read
        self.depth = 0


def _scan(data: bytes) -> _Scan:
    # expat, the parser under ElementTree, because it gives byte offsets. The encoding given
    # overrides the document's declaration: offsets are into these UTF-8 bytes.
    parser = xml.parsers.expat.ParserCreate(encoding="utf-8")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    scan = _Scan()

    def refuse_dtd(*_args: object) -> None:
        # No entity can be declared, hence none expanded (billion laughs): libvirt domain
        # XML never has a DOCTYPE.
        raise DomainError("DOCTYPE or entity declarations are not allowed in a domain XML")

    def start(tag: str, attributes: Dict[str, str]) -> None:
        _on_start(scan, parser.CurrentByteIndex, tag, attributes)
        scan.depth += 1
        scan.texts.append([])
        if scan.free_text_depth or (scan.depth == 2 and tag in _FREE_TEXT):
            scan.free_text_depth += 1

    def text(data: str) -> None:
        if scan.texts:
            scan.texts[-1].append(data)

    def end(tag: str) -> None:
        value = "".join(scan.texts.pop())
        if scan.free_text_depth:
            scan.free_text_depth -= 1
        elif "/" in value:
            scan.values.append((None, tag, "", value))
        scan.depth -= 1
        if scan.depth == 0:
            scan.domain_end = parser.CurrentByteIndex
        elif scan.depth == 1 and tag == "devices":
            scan.devices_end = parser.CurrentByteIndex

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        raise DomainError(f"malformed XML: {error}") from None
    return scan


def _on_start(scan: _Scan, offset: int, tag: str, attributes: Dict[str, str]) -> None:
    if scan.depth == 0 and tag != "domain":
        raise DomainError(f"root element is <{tag}>, not <domain>")
    if scan.depth == 1:
        if scan.domain_first_child is None:
            scan.domain_first_child = offset
        if tag == "devices":
            if scan.devices_start is not None:
                raise DomainError("more than one <devices>")
            scan.devices_start = offset
    in_devices = scan.devices_start is not None and scan.devices_end is None
    if scan.depth == 2:
        is_device = in_devices and tag in ("serial", "console")
        scan.current = _Device(tag, attributes) if is_device else None
        if scan.current is not None:
            scan.devices.append(scan.current)
        if in_devices and scan.devices_first_child is None:
            scan.devices_first_child = offset
    elif scan.depth == 3 and scan.current is not None and tag in ("target", "source"):
        scan.current.children.append((tag, attributes))
    if not scan.free_text_depth:
        owner = scan.current if scan.depth == 3 and tag == "source" else None
        for name, value in attributes.items():
            if "/" in value:
                scan.values.append((owner, tag, name, value))


def _foreign_path(scan: _Scan, pipe_base: str) -> Optional[str]:
    directory = "/" + posixpath.normpath(posixpath.dirname(pipe_base)).lstrip("/")

    def inside(path: str) -> bool:
        if directory == "/":  # every path is below /: only its entries count
            return path != "/" and posixpath.dirname(path) == "/"
        return path == directory or path.startswith(directory + "/")

    for device, tag, attribute, value in scan.values:
        if (
            device is not None
            and (tag, attribute, value) == ("source", "path", pipe_base)
            and _is_ours(device, pipe_base)
        ):
            continue  # our own device: the only one allowed on these FIFOs
        for found in _PATH_IN_TEXT.findall(value):
            path = "/" + posixpath.normpath(str(found)).lstrip("/")  # normpath keeps a //
            if inside(path):
                return path
    return None


def _is_ours(device: _Device, pipe_base: str) -> bool:
    source = device.child("source") or {}
    return (
        device.tag == "serial"
        and device.attributes.get("type") == "pipe"
        and source.get("path") == pipe_base
        and _takes_port_zero(device)
    )


def _takes_port_zero(device: _Device) -> bool:
    target = device.child("target") or {}
    if device.tag == "console":
        # libvirt makes a console whose target type is serial (the default on x86) the
        # serial port 0, or the alias of an existing one.
        return target.get("type", "serial") == "serial"
    port = target.get("port", "0").strip()  # no port: libvirt gives the first free, 0
    return re.match(r"[0-9]+\Z", port) is not None and int(port) == 0


def _insert(data: bytes, scan: _Scan, element: str) -> bytes:
    if scan.domain_end is None or not data.startswith(b"</domain", scan.domain_end):
        raise DomainError("<domain> is empty")
    if scan.devices_start is None:
        # No <devices> at all: add one holding our serial, as the last child of <domain>.
        block = f"<devices>{element}</devices>".encode()
        return _insert_before(data, scan.domain_end, scan.domain_first_child, block)
    empty = re.compile(_EMPTY_TAG.format("devices").encode()).match(data, scan.devices_start)
    if empty:
        block = f"<devices>{element}</devices>".encode()
        return data[: empty.start()] + block + data[empty.end() :]
    if scan.devices_end is None or not data.startswith(b"</devices", scan.devices_end):
        raise DomainError("cannot find </devices>")  # not expected from a well-formed parse
    return _insert_before(data, scan.devices_end, scan.devices_first_child, element.encode())


def _insert_before(data: bytes, closing: int, first_child: Optional[int], block: bytes) -> bytes:
    """`block` inserted before the closing tag at `closing`, as its own line when the
    closing tag starts a line (indented like the first sibling), else inline."""
    closing_indent = _indent(data, closing)
    if closing_indent is None:
        return data[:closing] + block + data[closing:]
    child_indent = _indent(data, first_child) if first_child is not None else None
    if child_indent is None:
        child_indent = closing_indent + (b"  " if b" " in closing_indent else b"\t")
    line_start = closing - len(closing_indent)
    newline = b"\r\n" if data[:line_start].endswith(b"\r\n") else b"\n"
    return data[:line_start] + child_indent + block + newline + data[line_start:]


def _indent(data: bytes, offset: int) -> Optional[bytes]:
    """The whitespace before `offset` on its line, or None if the line has text there."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    if line_start == 0:
        return None  # on the first line: never a place of its own
    prefix = data[line_start:offset]
    return prefix if prefix.strip(b" \t") == b"" else None


def _attribute(value: str) -> str:
    """`value` escaped for a single- or double-quoted XML attribute."""
    bad = _NOT_XML.search(value)
    if bad:
        raise ValueError(f"{value!r}: character {bad.group()!r} cannot appear in XML")
    for char, reference in _ATTRIBUTE_ESCAPES:
        value = value.replace(char, reference)
    return value


def _open_regular(path: str) -> int:
    """A descriptor of `path` for reading, refusing symlinks: replacing one would cut it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DomainError(f"{path} is a symlink: refused") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DomainError(f"{path} is not a regular file: refused")
    return fd


def _replace(path: str, data: bytes, st: os.stat_result) -> None:
    """Replace `path` by `data` atomically, keeping its mode and owner."""
    directory, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode))
            new = os.fstat(out.fileno())
            if (new.st_uid, new.st_gid) != (st.st_uid, st.st_gid):
                # Typically root editing oneadmin's file: it must stay oneadmin's. Failing
                # to (not root) fails the edit rather than handing the file to us.
                os.fchown(out.fileno(), st.st_uid, st.st_gid)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
