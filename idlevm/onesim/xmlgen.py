"""XML bodies exactly shaped like oned's to_xml (validated against the 7.4.0 XSDs).

Built with string joins rather than a DOM: a 50k-VM pool must render in well under a
second from the per-VM cache, and this is what oned does too (ostringstream).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from idlevm.onesim.model import Host, Template, TemplateValue, Vm

# Characters XML 1.0 forbids even escaped; a probe could publish them, oned would not.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# Short body (oned's to_xml_short): the template keeps only these (vm_pool.xsd order).
SHORT_TEMPLATE_KEYS = ("CPU", "MEMORY", "VCPU", "DISK", "NIC", "GRAPHICS")
SHORT_MONITORING_KEYS = ("CPU", "MEMORY", "STATE")
SHORT_USER_TEMPLATE_KEYS = frozenset(
    {"LABELS", "ERROR", "SCHED_MESSAGE", "SCHED_RANK", "SCHED_DS_RANK",
     "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS", "HYPERVISOR", "LOGO"}
)  # fmt: skip

_PERMISSIONS = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)
_BACKUPS = "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS>"


def cdata(value: str) -> str:
    """oned wraps template values in CDATA; a "]]>" inside must be split across sections."""
    value = _BAD_CHARS.sub("", value)
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text(value: str) -> str:
    """Escape plain element text (names, host names)."""
    value = _BAD_CHARS.sub("", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(name: str, value: TemplateValue) -> str:
    if isinstance(value, str):
        return f"<{name}>{cdata(value)}</{name}>"
    vectors = [value] if isinstance(value, dict) else value
    out = []
    for vec in vectors:
        inner = "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in sorted(vec.items()))
        out.append(f"<{name}>{inner}</{name}>")
    return "".join(out)


def template(tag: str, attrs: Template | dict[str, str], keys: Iterable[str] | None = None) -> str:
    """A TEMPLATE-like element; oned keeps attributes in a sorted multimap, hence sorted()."""
    names = sorted(attrs) if keys is None else [k for k in keys if k in attrs]
    body = "".join(_attr(k, attrs[k]) for k in names)
    return f"<{tag}>{body}</{tag}>" if body else f"<{tag}/>"


def _history(vm: Vm, full: bool) -> str:
    if not vm.history:
        return "<HISTORY_RECORDS/>"
    records = vm.history if full else vm.history[-1:]
    parts = ["<HISTORY_RECORDS>"]
    for h in records:
        head = (
            f"<HISTORY><OID>{vm.id}</OID><SEQ>{h.seq}</SEQ><HOSTNAME>{text(h.hostname)}</HOSTNAME>"
            f"<HID>{h.hid}</HID><CID>{h.cid}</CID>"
        )
        if full:
            parts.append(
                f"{head}<STIME>{h.stime}</STIME><ETIME>{h.etime}</ETIME>"
                f"<VM_MAD>{cdata(h.vm_mad)}</VM_MAD><TM_MAD>{cdata(h.tm_mad)}</TM_MAD>"
                f"<DS_ID>{h.ds_id}</DS_ID><PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID>"
                f"<PSTIME>{h.stime}</PSTIME><PETIME>{h.stime}</PETIME>"
                f"<RSTIME>{h.stime}</RSTIME><RETIME>{h.etime}</RETIME>"
                f"<ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>{h.action}</ACTION>"
                f"<UID>{h.uid}</UID><GID>{h.gid}</GID><REQUEST_ID>-1</REQUEST_ID></HISTORY>"
            )
        else:
            parts.append(
                f"{head}<DS_ID>{h.ds_id}</DS_ID><VM_MAD>{cdata(h.vm_mad)}</VM_MAD>"
                f"<TM_MAD>{cdata(h.tm_mad)}</TM_MAD><ACTION>{h.action}</ACTION></HISTORY>"
            )
    parts.append("</HISTORY_RECORDS>")
    return "".join(parts)


def _vm_head(vm: Vm, full: bool) -> str:
    perms = _PERMISSIONS if full else ""
    prev = (
        f"<PREV_STATE>{vm.prev_state}</PREV_STATE><PREV_LCM_STATE>{vm.prev_lcm_state}"
        "</PREV_LCM_STATE>"
        if full
        else ""
    )
    return (
        f"<VM><ID>{vm.id}</ID><UID>{vm.uid}</UID><GID>{vm.gid}</GID>"
        f"<UNAME>{text(vm.uname)}</UNAME><GNAME>{text(vm.gname)}</GNAME>"
        f"<NAME>{text(vm.name)}</NAME>{perms}<LAST_POLL>{vm.last_poll}</LAST_POLL>"
        f"<STATE>{vm.state}</STATE><LCM_STATE>{vm.lcm_state}</LCM_STATE>{prev}"
        f"<RESCHED>{vm.resched}</RESCHED><STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME>"
        f"<DEPLOY_ID>{text(vm.deploy_id)}</DEPLOY_ID>"
    )


def vm_template(vm: Vm) -> Template:
    """The VM TEMPLATE as oned stores it: the free attributes plus the capacity ones."""
    tmpl: Template = dict(vm.template)
    tmpl["CPU"] = vm.cpu
    tmpl["VCPU"] = str(vm.vcpu)
    tmpl["MEMORY"] = str(vm.memory_mb)
    tmpl["VMID"] = str(vm.id)
    tmpl.setdefault("TM_MAD_SYSTEM", "ssh")
    return tmpl


def vm_full(vm: Vm) -> str:
    return (
        _vm_head(vm, True)
        + template("MONITORING", vm.monitoring)
        + "<SCHED_ACTIONS/>"
        + template("TEMPLATE", vm_template(vm))
        + template("USER_TEMPLATE", vm.user_template)
        + _history(vm, True)
        + _BACKUPS
        + "</VM>"
    )


def vm_short(vm: Vm) -> str:
    user = {k: v for k, v in vm.user_template.items() if k in SHORT_USER_TEMPLATE_KEYS}
    return (
        _vm_head(vm, False)
        + template("TEMPLATE", vm_template(vm), SHORT_TEMPLATE_KEYS)
        + template("MONITORING", vm.monitoring, SHORT_MONITORING_KEYS)
        + template("USER_TEMPLATE", user)
        + _history(vm, False)
        + "</VM>"
    )


def wire(xml: str) -> str:
    """XML as it travels inside an XML-RPC <string> (what the marshaller would escape)."""
    return xml.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unwire(escaped: str) -> str:
    return escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def vm_full_wire(vm: Vm) -> str:
    """vm_full() escaped for the wire, cached on the VM until it changes."""
    if vm.xml_full is None:
        vm.xml_full = wire(vm_full(vm))
    return vm.xml_full


def vm_short_wire(vm: Vm) -> str:
    if vm.xml_short is None:
        vm.xml_short = wire(vm_short(vm))
    return vm.xml_short


POOL_OPEN = wire("<VM_POOL>")
POOL_CLOSE = wire("</VM_POOL>")


def _host_share(host: Host, vms: list[Vm]) -> str:
    cpu = sum(int(float(vm.cpu) * 100) for vm in vms)
    mem = sum(vm.memory_mb * 1024 for vm in vms)
    total_cpu = host.cores * 100
    disk = 500 * 1024
    used_disk = sum(10 * 1024 for _ in vms)
    return (
        f"<HOST_SHARE><MEM_USAGE>{mem}</MEM_USAGE><CPU_USAGE>{cpu}</CPU_USAGE>"
        f"<TOTAL_MEM>{host.memory_kb}</TOTAL_MEM><TOTAL_CPU>{total_cpu}</TOTAL_CPU>"
        f"<MAX_MEM>{host.memory_kb}</MAX_MEM><MAX_CPU>{total_cpu}</MAX_CPU>"
        f"<RUNNING_VMS>{len(vms)}</RUNNING_VMS><VMS_THREAD>{len(vms)}</VMS_THREAD>"
        f"<DATASTORES><DISK_USAGE>0</DISK_USAGE><DS><FREE_MB>{disk - used_disk}</FREE_MB>"
        f"<ID>0</ID><TOTAL_MB>{disk}</TOTAL_MB><USED_MB>{used_disk}</USED_MB></DS>"
        f"<FREE_DISK>{disk - used_disk}</FREE_DISK><MAX_DISK>{disk}</MAX_DISK>"
        f"<USED_DISK>{used_disk}</USED_DISK></DATASTORES>"
        "<PCI_DEVICES/><NUMA_NODES/></HOST_SHARE>"
    )


def _host_monitoring(host: Host, vms: list[Vm]) -> str:
    used_cpu = sum(int(float(vm.monitoring.get("CPU", "0") or 0)) for vm in vms)
    used_mem = sum(int(float(vm.monitoring.get("MEMORY", "0") or 0)) for vm in vms)
    total_cpu = host.cores * 100
    return (
        f"<MONITORING><TIMESTAMP>{host.last_mon}</TIMESTAMP><ID>{host.id}</ID><CAPACITY>"
        f"<FREE_CPU>{max(total_cpu - used_cpu, 0)}</FREE_CPU>"
        f"<FREE_MEMORY>{max(host.memory_kb - used_mem, 0)}</FREE_MEMORY>"
        f"<USED_CPU>{used_cpu}</USED_CPU><USED_MEMORY>{used_mem}</USED_MEMORY></CAPACITY>"
        "<SYSTEM><NETRX>0</NETRX><NETTX>0</NETTX></SYSTEM></MONITORING>"
    )


def host(h: Host, vms: list[Vm]) -> str:
    """One HOST; vms are the VMs holding capacity on it (in id order, as oned lists them)."""
    ids = "".join(f"<ID>{vm.id}</ID>" for vm in vms)
    return (
        f"<HOST><ID>{h.id}</ID><NAME>{text(h.name)}</NAME><STATE>{h.state}</STATE>"
        f"<PREV_STATE>{h.prev_state}</PREV_STATE><IM_MAD>{cdata(h.im_mad)}</IM_MAD>"
        f"<VM_MAD>{cdata(h.vm_mad)}</VM_MAD><CLUSTER_ID>{h.cluster_id}</CLUSTER_ID>"
        f"<CLUSTER>{text(h.cluster)}</CLUSTER>{_host_share(h, vms)}"
        + (f"<VMS>{ids}</VMS>" if ids else "<VMS/>")
        + template("TEMPLATE", h.template)
        + _host_monitoring(h, vms)
        + "</HOST>"
    )


def host_pool(fragments: Iterable[str]) -> str:
    return "<HOST_POOL>" + "".join(fragments) + "</HOST_POOL>"
