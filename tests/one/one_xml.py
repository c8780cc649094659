"""Realistic OpenNebula 7.4 XML bodies for tests (shaped like oned's to_xml)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PERMS = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)


def attrs(values: Mapping[str, str]) -> str:
    return "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in sorted(values.items()))


def history(vm_id: int, seq: int, hid: int, hostname: str) -> str:
    return (
        f"<HISTORY><OID>{vm_id}</OID><SEQ>{seq}</SEQ><HOSTNAME>{hostname}</HOSTNAME>"
        f"<HID>{hid}</HID><CID>0</CID><STIME>1764000000</STIME><ETIME>0</ETIME>"
        "<VM_MAD><![CDATA[kvm]]></VM_MAD><TM_MAD><![CDATA[ssh]]></TM_MAD><DS_ID>0</DS_ID>"
        "<PLAN_ID>-1</PLAN_ID><ACTION_ID>-1</ACTION_ID><PSTIME>1764000000</PSTIME>"
        "<PETIME>1764000010</PETIME><RSTIME>1764000010</RSTIME><RETIME>0</RETIME>"
        "<ESTIME>0</ESTIME><EETIME>0</EETIME><ACTION>0</ACTION><UID>0</UID><GID>0</GID>"
        "<REQUEST_ID>-1</REQUEST_ID></HISTORY>"
    )


def vm(
    vm_id: int,
    *,
    name: str | None = None,
    state: int = 3,
    lcm_state: int = 3,
    histories: Iterable[tuple[int, int, str]] = ((0, 1, "node1"),),
    monitoring: Mapping[str, str] | None = None,
    user_template: Mapping[str, str] | None = None,
    cpu: str = "0.5",
    vcpu: str | None = "2",
    memory: str = "2048",
    extra_template: str = "",
) -> str:
    mon = {"CPU": "1.5", "MEMORY": "1048576", "NETRX": "1000", "TIMESTAMP": "1764030000"}
    mon.update(monitoring or {})
    user = {"DESCRIPTION": "test vm", "LOGO": "images/logos/ubuntu.png"}
    user.update(user_template or {})
    vcpu_xml = f"<VCPU><![CDATA[{vcpu}]]></VCPU>" if vcpu is not None else ""
    hist = "".join(history(vm_id, seq, hid, host) for seq, hid, host in histories)
    return (
        f"<VM><ID>{vm_id}</ID><UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME>"
        f"<NAME>{name or f'vm-{vm_id}'}</NAME>{PERMS}<LAST_POLL>1764030001</LAST_POLL>"
        f"<STATE>{state}</STATE><LCM_STATE>{lcm_state}</LCM_STATE><PREV_STATE>3</PREV_STATE>"
        "<PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>1764000000</STIME>"
        f"<ETIME>0</ETIME><DEPLOY_ID>one-{vm_id}</DEPLOY_ID>"
        f"<MONITORING>{attrs(mon)}</MONITORING><SCHED_ACTIONS/>"
        f"<TEMPLATE><CONTEXT><NETWORK><![CDATA[YES]]></NETWORK></CONTEXT>"
        f"<CPU><![CDATA[{cpu}]]></CPU><DISK><DISK_ID><![CDATA[0]]></DISK_ID></DISK>"
        f"<MEMORY><![CDATA[{memory}]]></MEMORY><NIC><IP><![CDATA[10.0.0.{vm_id % 250}]]>"
        f"</IP></NIC><TM_MAD_SYSTEM><![CDATA[ssh]]></TM_MAD_SYSTEM>{vcpu_xml}"
        f"<VMID><![CDATA[{vm_id}]]></VMID>{extra_template}</TEMPLATE>"
        f"<USER_TEMPLATE>{attrs(user)}</USER_TEMPLATE>"
        f"<HISTORY_RECORDS>{hist}</HISTORY_RECORDS>"
        "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>"
    )


def vm_pool(fragments: Iterable[str]) -> str:
    return "<VM_POOL>" + "".join(fragments) + "</VM_POOL>"


def host(
    host_id: int,
    *,
    name: str | None = None,
    state: int = 2,
    vm_ids: Iterable[int] = (),
    template: Mapping[str, str] | None = None,
) -> str:
    ids = list(vm_ids)
    vms = "<VMS>" + "".join(f"<ID>{i}</ID>" for i in ids) + "</VMS>" if ids else "<VMS/>"
    tmpl = {"ARCH": "x86_64", "CPUSPEED": "2400", "HYPERVISOR": "kvm"}
    tmpl.update(template or {})
    return (
        f"<HOST><ID>{host_id}</ID><NAME>{name or f'node{host_id}'}</NAME><STATE>{state}</STATE>"
        "<PREV_STATE>2</PREV_STATE><IM_MAD><![CDATA[kvm]]></IM_MAD>"
        "<VM_MAD><![CDATA[kvm]]></VM_MAD><CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>"
        "<HOST_SHARE><MEM_USAGE>2097152</MEM_USAGE><CPU_USAGE>100</CPU_USAGE>"
        "<TOTAL_MEM>16777216</TOTAL_MEM><TOTAL_CPU>800</TOTAL_CPU><MAX_MEM>16777216</MAX_MEM>"
        f"<MAX_CPU>800</MAX_CPU><RUNNING_VMS>{len(ids)}</RUNNING_VMS>"
        "<VMS_THREAD>0</VMS_THREAD><DATASTORES><DISK_USAGE>0</DISK_USAGE>"
        "<FREE_DISK>1000</FREE_DISK><MAX_DISK>2000</MAX_DISK><USED_DISK>1000</USED_DISK>"
        "</DATASTORES><PCI_DEVICES/><NUMA_NODES/></HOST_SHARE>"
        f"{vms}<TEMPLATE>{attrs(tmpl)}<RESERVED><CPU/></RESERVED></TEMPLATE>"
        "<MONITORING><TIMESTAMP>1764030000</TIMESTAMP><ID>0</ID></MONITORING></HOST>"
    )


def host_pool(fragments: Iterable[str]) -> str:
    return "<HOST_POOL>" + "".join(fragments) + "</HOST_POOL>"


# OpenNebula 3.2 era: no CLUSTER, TOTAL_*, VMS, MONITORING, USER_TEMPLATE, PERMISSIONS.
HOST_32 = (
    "<HOST><ID>3</ID><NAME>fcl001</NAME><STATE>2</STATE><IM_MAD>im_kvm</IM_MAD>"
    "<VM_MAD>vmm_kvm</VM_MAD><VN_MAD>dummy</VN_MAD><TM_MAD>tm_shared</TM_MAD>"
    "<LAST_MON_TIME>1330000000</LAST_MON_TIME><HOST_SHARE><DISK_USAGE>0</DISK_USAGE>"
    "<MEM_USAGE>1048576</MEM_USAGE><CPU_USAGE>100</CPU_USAGE><MAX_DISK>0</MAX_DISK>"
    "<MAX_MEM>8388608</MAX_MEM><MAX_CPU>400</MAX_CPU><FREE_DISK>0</FREE_DISK>"
    "<FREE_MEM>7000000</FREE_MEM><FREE_CPU>390</FREE_CPU><USED_DISK>0</USED_DISK>"
    "<USED_MEM>1000000</USED_MEM><USED_CPU>10</USED_CPU><RUNNING_VMS>1</RUNNING_VMS>"
    "</HOST_SHARE><TEMPLATE><ARCH><![CDATA[x86_64]]></ARCH>"
    "<IDLE><![CDATA[1;7:seq=1,ts=1330000000,rcv=1330000001,state=idle,since=1329990000]]>"
    "</IDLE></TEMPLATE></HOST>"
)

VM_32 = (
    "<VM><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME>"
    "<NAME>one-7</NAME><LAST_POLL>1330000000</LAST_POLL><STATE>3</STATE>"
    "<LCM_STATE>3</LCM_STATE><STIME>1329000000</STIME><ETIME>0</ETIME>"
    "<DEPLOY_ID>one-7</DEPLOY_ID><MEMORY>524288</MEMORY><CPU>2</CPU><NET_TX>0</NET_TX>"
    "<NET_RX>0</NET_RX><TEMPLATE><CPU><![CDATA[1]]></CPU><MEMORY><![CDATA[512]]></MEMORY>"
    "<NAME><![CDATA[one-7]]></NAME><VMID><![CDATA[7]]></VMID></TEMPLATE><HISTORY_RECORDS>"
    "<HISTORY><SEQ>0</SEQ><HOSTNAME>fcl001</HOSTNAME><VM_DIR>/var/lib/one/</VM_DIR>"
    "<HID>3</HID><STIME>1329000000</STIME><ETIME>0</ETIME><VMMMAD>vmm_kvm</VMMMAD>"
    "<VNMMAD>dummy</VNMMAD><TMMAD>tm_shared</TMMAD><PSTIME>0</PSTIME><PETIME>0</PETIME>"
    "<RSTIME>0</RSTIME><RETIME>0</RETIME><ESTIME>0</ESTIME><EETIME>0</EETIME>"
    "<REASON>0</REASON></HISTORY></HISTORY_RECORDS></VM>"
)
