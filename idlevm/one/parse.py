"""OpenNebula XML bodies to records, with lxml.

Hardened: no network, no DTD loading, no entity expansion. huge_tree is on: with libxml2's
10 MB text-node limit, one VM owner's oversized USER_TEMPLATE value would make the whole
page unparseable and fail the cycle for everyone; the transport caps the reply size
instead, and _scalars drops long values. VM pools are streamed with iterparse and each VM
element is dropped once converted, so a 100k-VM pool never exists as one tree.

Tolerant of missing optional elements (3.x XML lacks CLUSTER, VMS, USER_TEMPLATE,
MONITORING, ...), strict about types: an element that is present but not an integer where
OpenNebula writes one is a OneParseError naming the element and the object.

Bounds on VM-controlled data (templates, monitoring), so one VM cannot bloat 100k records:
- at most MAX_ATTRS scalar attributes and MAX_DICT_CHARS characters kept per template dict
  (the rest ignored);
- keys longer than MAX_KEY_CHARS and values longer than MAX_VALUE_CHARS are skipped (not
  truncated: a cut value could mislead a rule that matches on it);
- vector attributes (elements with children) are skipped;
- IDLE_* values are cut to MAX_IDLE_VALUE_CHARS: every valid one is far shorter, so a cut
  value is still rejected by the idle parser.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree

from idlevm.one.errors import OneParseError
from idlevm.one.idle import MONITORING_NAMES, parse_host_idle, parse_monitoring_idle
from idlevm.one.records import Host, IdleProblem, IdleRecord, VirtualMachine

MAX_ATTRS = 200
# Whole dict, keys and values, as stored (JSON-escaped): what one VM's owner can make us
# store per VM and per cycle.
MAX_DICT_CHARS = 16384
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 4096
MAX_IDLE_VALUE_CHARS = 64

Xml = bytes | str
Element = Any  # lxml has no type stubs here

_PARSER_OPTIONS: dict[str, bool] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": True,
    "remove_comments": True,
    "remove_pis": True,
}
_PARSER = etree.XMLParser(**_PARSER_OPTIONS)
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_DECLARATION = re.compile(r"\s*<\?xml[^>]*\?>")


def _as_bytes(xml: Xml) -> bytes:
    if isinstance(xml, bytes):
        return xml
    # lxml refuses str with an encoding declaration; the str is already decoded, so drop it.
    if xml[:64].lstrip().startswith("<?xml"):
        xml = _DECLARATION.sub("", xml, count=1)
    return xml.encode("utf-8")


def _root(xml: Xml, tag: str) -> Element:
    try:
        root = etree.fromstring(_as_bytes(xml), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise OneParseError(f"malformed XML from OpenNebula: {exc}") from None
    if root.tag != tag:
        raise OneParseError(f"expected <{tag}> from OpenNebula, got <{str(root.tag)[:64]}>")
    return root


# ---------------------------------------------------------------- scalar helpers
# The per-VM code runs 100k times per pool: single passes over children, no XPath.


def _int(text: str | None, what: str, obj: str) -> int:
    # Fast path for the common case; int() alone would also take " 1", "+1", "1_0" and
    # non-ASCII digits.
    if text is not None and text.isdigit() and text.isascii() and len(text) < 20:
        return int(text)
    if text is None or not _INT_RE.fullmatch(text):
        shown = "nothing" if text is None else repr(text[:32])
        raise OneParseError(f"{obj}: {what} is {shown}, not an integer")
    return int(text)


def _opt_int(texts: dict[str, str], tag: str, obj: str, default: int) -> int:
    text = texts.get(tag)
    return default if text is None else _int(text, tag, obj)


def _float(text: str | None, what: str, obj: str) -> float:
    try:
        value = float(text) if text is not None and len(text) < 64 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        shown = "nothing" if text is None else repr(text[:32])
        raise OneParseError(f"{obj}: {what} is {shown}, not a number")
    return value


def _split(
    el: Element, scalars: frozenset[str], nodes: frozenset[str] = frozenset()
) -> tuple[dict[str, str], dict[str, Element]]:
    """Texts of the wanted scalar children and the wanted container children (first of each:
    OpenNebula's fixed elements appear once). iterchildren(*tags) filters in C, so no
    Python proxy is made for the many children we do not read."""
    texts: dict[str, str] = {}
    found: dict[str, Element] = {}
    for child in el.iterchildren(*scalars, *nodes):
        tag = child.tag
        if tag in scalars:
            if tag not in texts:
                texts[tag] = child.text or ""
        elif tag not in found:
            found[tag] = child
    return texts, found


def _stored_size(text: str) -> int:
    """An upper bound of text's size in the database: JSON escapes non-ASCII characters,
    up to 12 bytes each (a surrogate pair)."""
    return len(text) if text.isascii() else 12 * len(text)


def _scalars(el: Element | None, skip: str | None = None) -> dict[str, str]:
    """Scalar child attributes of a template-like element, within the bounds above."""
    out: dict[str, str] = {}
    if el is None:
        return out
    budget = MAX_DICT_CHARS
    for child in el:
        key = child.tag
        if key.__class__ is not str or len(child) or len(key) > MAX_KEY_CHARS:
            continue
        if key in out or key == skip:
            continue
        value = child.text or ""
        if len(value) > MAX_VALUE_CHARS:
            continue
        budget -= _stored_size(key) + _stored_size(value)
        if budget < 0:
            break
        out[key] = value
        if len(out) >= MAX_ATTRS:
            break
    return out


# ---------------------------------------------------------------- VMs

_VM_SCALARS = frozenset(
    {"ID", "NAME", "UID", "UNAME", "GID", "GNAME", "STATE", "LCM_STATE", "STIME", "ETIME",
     "LAST_POLL"}
)  # fmt: skip
_VM_NODES = frozenset({"TEMPLATE", "USER_TEMPLATE", "MONITORING", "HISTORY_RECORDS"})
_TEMPLATE_SCALARS = frozenset({"CPU", "VCPU", "MEMORY"})
_HISTORY_SCALARS = frozenset({"SEQ", "HID", "HOSTNAME"})


def _last_history(records: Element | None, obj: str) -> tuple[int | None, str | None]:
    """HID/HOSTNAME of the HISTORY with the greatest SEQ: where the VM is (or was) placed."""
    best: tuple[int, int, str] | None = None
    if records is None:
        return None, None
    for hist in records.iterchildren("HISTORY"):
        fields = _split(hist, _HISTORY_SCALARS)[0]
        seq = _int(fields.get("SEQ"), "HISTORY/SEQ", obj)
        if best is None or seq > best[0]:
            hid = _int(fields.get("HID"), "HISTORY/HID", obj)
            best = (seq, hid, fields.get("HOSTNAME", ""))
    return (None, None) if best is None else (best[1], best[2])


def _monitoring(
    el: Element | None, vm_id: int
) -> tuple[dict[str, str], IdleRecord | None, tuple[IdleProblem, ...]]:
    """Scalar MONITORING attributes (bounded, IDLE_* excluded) and the idle record."""
    monitoring: dict[str, str] = {}
    if el is None:
        return monitoring, None, ()
    idle_attrs: dict[str, str] = {}
    duplicate = ""
    budget = MAX_DICT_CHARS
    for child in el:
        key = child.tag
        if key.__class__ is not str or len(key) > MAX_KEY_CHARS:
            continue
        if key.startswith("IDLE_"):
            if key in MONITORING_NAMES:
                if key in idle_attrs or len(child):
                    duplicate = key
                idle_attrs[key] = (child.text or "")[:MAX_IDLE_VALUE_CHARS]
            continue
        value = child.text or ""
        fits = len(value) <= MAX_VALUE_CHARS and len(monitoring) < MAX_ATTRS
        if fits and not len(child) and key not in monitoring:
            budget -= _stored_size(key) + _stored_size(value)
            if budget >= 0:
                monitoring[key] = value
    if duplicate:
        problem = f"malformed idle data for VM {vm_id}: {duplicate} given twice or not scalar"
        return monitoring, None, (IdleProblem(vm_id, problem),)
    if not idle_attrs:
        return monitoring, None, ()
    record, problems = parse_monitoring_idle(idle_attrs, vm_id=vm_id)
    return monitoring, record, tuple(problems)


def vm_from_element(el: Element) -> VirtualMachine:
    """A VirtualMachine from a <VM> element (vm.info body or one entry of a pool)."""
    c, nodes = _split(el, _VM_SCALARS, _VM_NODES)
    vm_id = _int(c.get("ID"), "ID", "VM")
    obj = f"VM {vm_id}"
    template = nodes.get("TEMPLATE")
    tmpl = _split(template, _TEMPLATE_SCALARS)[0] if template is not None else {}
    host_id, host_name = _last_history(nodes.get("HISTORY_RECORDS"), obj)
    monitoring, idle, problems = _monitoring(nodes.get("MONITORING"), vm_id)
    cpu = tmpl.get("CPU")
    return VirtualMachine(
        id=vm_id,
        name=c.get("NAME", ""),
        uid=_opt_int(c, "UID", obj, -1),
        uname=c.get("UNAME", ""),
        gid=_opt_int(c, "GID", obj, -1),
        gname=c.get("GNAME", ""),
        state=_int(c.get("STATE"), "STATE", obj),
        lcm_state=_opt_int(c, "LCM_STATE", obj, 0),
        stime=_opt_int(c, "STIME", obj, 0),
        etime=_opt_int(c, "ETIME", obj, 0),
        last_poll=_opt_int(c, "LAST_POLL", obj, 0),
        host_id=host_id,
        host_name=host_name,
        cpu=0.0 if cpu is None else _float(cpu, "TEMPLATE/CPU", obj),
        vcpu=_opt_int(tmpl, "VCPU", obj, 1),
        memory=_opt_int(tmpl, "MEMORY", obj, 0),
        user_template=_scalars(nodes.get("USER_TEMPLATE")),
        monitoring=monitoring,
        idle=idle,
        idle_problems=problems,
    )


def parse_vm(xml: Xml) -> VirtualMachine:
    """The body of one.vm.info."""
    return vm_from_element(_root(xml, "VM"))


def parse_vm_pool(xml: Xml) -> Iterator[VirtualMachine]:
    """The body of one.vmpool.info / infoextended, streamed VM by VM."""
    events = etree.iterparse(
        io.BytesIO(_as_bytes(xml)), events=("end",), tag="VM", **_PARSER_OPTIONS
    )
    try:
        for _, el in events:
            parent = el.getparent()
            # A <VM> nested in a template (a user may name an attribute VM) is not a pool
            # entry: only children of the root are, and only those get converted and freed.
            if parent is None or parent.getparent() is not None:
                continue
            if parent.tag != "VM_POOL":
                raise OneParseError(f"expected <VM_POOL> from OpenNebula, got <{parent.tag}>")
            yield vm_from_element(el)
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del parent[0]
        root = events.root
    except etree.XMLSyntaxError as exc:
        raise OneParseError(f"malformed XML from OpenNebula: {exc}") from None
    if root is None or root.tag != "VM_POOL":
        got = "nothing" if root is None else f"<{str(root.tag)[:64]}>"
        raise OneParseError(f"expected <VM_POOL> from OpenNebula, got {got}")


# ---------------------------------------------------------------- hosts


def _host_idle(
    tmpl: Element | None, vm_ids: tuple[int, ...] | None, host_id: int
) -> tuple[dict[int, IdleRecord], tuple[IdleProblem, ...]]:
    if tmpl is None:
        return {}, ()
    found = [child for child in tmpl.iterchildren("IDLE")]
    if not found:
        return {}, ()
    if len(found) > 1 or len(found[0]):
        reason = f"malformed idle data on host {host_id}: IDLE given twice or not scalar"
        return {}, (IdleProblem(None, reason),)
    records, problems = parse_host_idle(found[0].text or "", vm_ids)
    return records, tuple(problems)


_HOST_SCALARS = frozenset({"ID", "NAME", "STATE", "CLUSTER_ID", "CLUSTER"})
_HOST_NODES = frozenset({"HOST_SHARE", "VMS", "TEMPLATE"})
_SHARE_SCALARS = frozenset(
    {"TOTAL_CPU", "CPU_USAGE", "MAX_CPU", "TOTAL_MEM", "MEM_USAGE", "MAX_MEM", "RUNNING_VMS"}
)


def host_from_element(el: Element) -> Host:
    """A Host from a <HOST> element."""
    c, nodes = _split(el, _HOST_SCALARS, _HOST_NODES)
    host_id = _int(c.get("ID"), "ID", "host")
    obj = f"host {host_id}"
    share_el = nodes.get("HOST_SHARE")
    share = _split(share_el, _SHARE_SCALARS)[0] if share_el is not None else {}
    vms = nodes.get("VMS")
    vm_ids = (
        None if vms is None else tuple(_int(i.text, "VMS/ID", obj) for i in vms.iterchildren("ID"))
    )
    tmpl = nodes.get("TEMPLATE")
    idle, problems = _host_idle(tmpl, vm_ids, host_id)

    def share_int(tag: str) -> int:
        return _opt_int(share, tag, obj, 0)

    return Host(
        id=host_id,
        name=c.get("NAME", ""),
        state=_int(c.get("STATE"), "STATE", obj),
        cluster_id=_opt_int(c, "CLUSTER_ID", obj, -1),
        cluster=c.get("CLUSTER", ""),
        # 3.x has no TOTAL_*: MAX_* is the same capacity there.
        total_cpu=_opt_int(share, "TOTAL_CPU", obj, share_int("MAX_CPU")),
        cpu_usage=share_int("CPU_USAGE"),
        max_cpu=share_int("MAX_CPU"),
        total_mem=_opt_int(share, "TOTAL_MEM", obj, share_int("MAX_MEM")),
        mem_usage=share_int("MEM_USAGE"),
        max_mem=share_int("MAX_MEM"),
        running_vms=share_int("RUNNING_VMS"),
        vm_ids=vm_ids or (),
        template=_scalars(tmpl, skip="IDLE"),
        idle=idle,
        idle_problems=problems,
    )


def parse_host(xml: Xml) -> Host:
    """The body of one.host.info."""
    return host_from_element(_root(xml, "HOST"))


def parse_host_pool(xml: Xml) -> list[Host]:
    """The body of one.hostpool.info (hosts are few: a plain tree is fine)."""
    return [host_from_element(el) for el in _root(xml, "HOST_POOL").iterchildren("HOST")]
