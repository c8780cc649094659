"""Cloud contents: generated from a seed, or loaded (and validated) from a JSON file.

The JSON format is documented in docs/onesim.md.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from idlevm.one.states import HOST_BY_NAME, LCM_BY_NAME, VM_BY_NAME
from idlevm.onesim.model import (
    ACTIVE,
    DONE,
    HOLD,
    LCM_INIT,
    PENDING,
    POWEROFF,
    RUNNING,
    STOPPED,
    SUSPENDED,
    UNDEPLOYED,
    UNKNOWN,
    History,
    Host,
    Template,
    Vm,
)

# (name, uid, gid, group name): oned's oneadmin and serveradmin, then ordinary users.
USERS = [
    ("oneadmin", 0, 0, "oneadmin"), ("serveradmin", 1, 0, "oneadmin"),
    ("alice", 2, 1, "users"), ("bob", 3, 1, "users"), ("carol", 4, 100, "research"),
    ("dave", 5, 100, "research"), ("erin", 6, 101, "teaching"),
]  # fmt: skip
SIZES = [("0.5", 1, 512), ("1", 1, 1024), ("1", 2, 2048), ("2", 2, 4096), ("2", 4, 8192),
         ("4", 8, 16384)]  # fmt: skip
# Every kind appears once first (so small scenarios cover them all), then by weight.
KINDS: list[tuple[tuple[int, int], int]] = [
    ((ACTIVE, RUNNING), 70), ((POWEROFF, LCM_INIT), 8), ((SUSPENDED, LCM_INIT), 6),
    ((PENDING, LCM_INIT), 4), ((HOLD, LCM_INIT), 3), ((ACTIVE, UNKNOWN), 3),
    ((STOPPED, LCM_INIT), 2), ((UNDEPLOYED, LCM_INIT), 2), ((DONE, LCM_INIT), 2),
]  # fmt: skip
_WITH_HISTORY = {ACTIVE, POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED, DONE}


class ScenarioError(ValueError):
    """A scenario file that does not follow the documented format."""


# ------------------------------------------------------------------------- generation


def generate(hosts: int, vms: int, seed: int, now: int) -> tuple[list[Host], list[Vm]]:
    """A deterministic cloud of `hosts` hosts and `vms` VMs."""
    if hosts < 1 or vms < 0:
        raise ValueError("need at least one host and a non-negative number of VMs")
    rnd = random.Random(seed)
    host_list = [_gen_host(i, rnd, hosts, now) for i in range(hosts)]
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    vm_list = []
    for i in range(vms):
        kind = kinds[i] if i < len(kinds) else rnd.choices(kinds, weights)[0]
        vm_list.append(_gen_vm(i, kind, rnd, host_list[i % hosts], now))
    return host_list, vm_list


def _gen_host(i: int, rnd: random.Random, count: int, now: int) -> Host:
    state = "MONITORED"
    if count >= 5 and i == count - 1:
        state = "DISABLED"
    elif count >= 10 and i == count - 2:
        state = "ERROR"
    cores = rnd.choice([16, 32, 48, 64])
    name = f"node{i + 1:02d}"
    return Host(
        id=i, name=name, state=HOST_BY_NAME[state], prev_state=HOST_BY_NAME[state],
        cores=cores, memory_kb=rnd.choice([64, 128, 256, 512]) * 1024 * 1024, last_mon=now,
        template={"ARCH": "x86_64", "CPUSPEED": "2400", "HOSTNAME": name, "HYPERVISOR": "kvm",
                  "IM_MAD": "kvm", "MODELNAME": "AMD EPYC 7543 32-Core Processor",
                  "RESERVED_CPU": "", "RESERVED_MEM": "", "VERSION": "7.4.0", "VM_MAD": "kvm"},
    )  # fmt: skip


def _gen_vm(i: int, kind: tuple[int, int], rnd: random.Random, host: Host, now: int) -> Vm:
    state, lcm = kind
    uname, uid, gid, gname = rnd.choice(USERS)
    cpu, vcpu, mem = rnd.choice(SIZES)
    stime = now - rnd.randint(3600, 90 * 86400)
    vm = Vm(
        id=i, name=f"{uname}-vm-{i}", uid=uid, gid=gid, uname=uname, gname=gname,
        state=state, lcm_state=lcm, prev_state=state, prev_lcm_state=lcm, stime=stime,
        cpu=cpu, vcpu=vcpu, memory_mb=mem, template=default_template(i),
        user_template={"DESCRIPTION": f"VM {i} of {uname}", "LABELS": "idlevm"},
    )  # fmt: skip
    if state in _WITH_HISTORY:
        closed = 0 if state == ACTIVE else now - rnd.randint(60, 3000)
        vm.history.append(History(0, host.id, host.name, stime, closed, uid=uid, gid=gid))
        vm.last_poll = now
        vm.monitoring = _gen_monitoring(i, rnd, mem, state == ACTIVE and lcm == RUNNING, now)
    if state == DONE:
        vm.etime = vm.history[-1].etime
    return vm


def _gen_monitoring(
    i: int, rnd: random.Random, mem: int, running: bool, now: int
) -> dict[str, str]:
    """Values like the KVM probes report (CPU in % of one CPU, MEMORY in KB)."""
    busy = running and rnd.random() < 0.7
    return {
        "CPU": f"{rnd.uniform(5, 90) if busy else rnd.uniform(0, 1.5):.2f}",
        "DISKRDBYTES": str(rnd.randint(10**6, 10**10)), "DISKRDIOPS": str(rnd.randint(10, 10**6)),
        "DISKWRBYTES": str(rnd.randint(10**6, 10**10)), "DISKWRIOPS": str(rnd.randint(10, 10**6)),
        "ID": str(i), "MEMORY": str(mem * 1024 * rnd.randint(30, 95) // 100),
        "NETRX": str(rnd.randint(10**4, 10**10)), "NETTX": str(rnd.randint(10**4, 10**10)),
        "TIMESTAMP": str(now),
    }  # fmt: skip


def default_template(i: int) -> Template:
    """The free part of a VM TEMPLATE (CPU/VCPU/MEMORY/VMID are added when rendering)."""
    return {
        "AUTOMATIC_REQUIREMENTS": "(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES)",
        "CONTEXT": {"NETWORK": "YES", "TARGET": "hda", "DISK_ID": "1"},
        "DISK": {"DISK_ID": "0", "DATASTORE": "default", "DATASTORE_ID": "1", "IMAGE": "ubuntu",
                 "IMAGE_ID": "0", "SIZE": "10240", "TARGET": "vda", "TYPE": "FILE"},
        "GRAPHICS": {"LISTEN": "0.0.0.0", "PORT": str(5900 + i), "TYPE": "VNC"},
        "NIC": {"BRIDGE": "br0", "IP": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "MAC": f"02:00:0a:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                "NETWORK": "private", "NETWORK_ID": "0", "NIC_ID": "0"},
        "OS": {"ARCH": "x86_64"},
        "TEMPLATE_ID": "0",
        "TM_MAD_SYSTEM": "ssh",
    }  # fmt: skip


# ------------------------------------------------------------------------- JSON files


def load(path: str | Path, now: int) -> tuple[list[Host], list[Vm]]:
    """Read a scenario file; raises ScenarioError naming the bad field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    return from_dict(data, now)


def from_dict(data: Any, now: int) -> tuple[list[Host], list[Vm]]:
    if not isinstance(data, dict) or set(data) - {"hosts", "vms"}:
        raise ScenarioError('scenario: expected an object with keys "hosts" and "vms"')
    hosts = [_host(f"hosts[{i}]", h, i, now) for i, h in enumerate(_list(data, "hosts"))]
    if not hosts:
        raise ScenarioError("hosts: at least one host is required")
    _unique("hosts", [h.id for h in hosts])
    by_id = {h.id: h for h in hosts}
    users = {name: (uid, gid, gname) for name, uid, gid, gname in USERS}
    vms = [_vm(f"vms[{i}]", v, i, by_id, users, now) for i, v in enumerate(_list(data, "vms"))]
    _unique("vms", [v.id for v in vms])
    return hosts, vms


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ScenarioError(f"{key}: expected a list")
    return value


def _unique(where: str, ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise ScenarioError(f"{where}: duplicate ids")


def _get(where: str, obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ScenarioError(f"{where}.{key}: expected an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ScenarioError(f"{where}.{key}: expected a string, got {value!r}")
    if kind is dict and not isinstance(value, dict):
        raise ScenarioError(f"{where}.{key}: expected an object, got {value!r}")
    return value


def _name(where: str, value: Any, table: dict[str, int]) -> int:
    if not isinstance(value, str) or value.upper() not in table:
        raise ScenarioError(f"{where}: unknown state {value!r} (one of {', '.join(table)})")
    return table[value.upper()]


def _attrs(where: str, obj: dict[str, Any], key: str) -> dict[str, str]:
    values = _get(where, obj, key, dict, {})
    return {str(k).upper(): _scalar(f"{where}.{key}.{k}", v) for k, v in values.items()}


def _scalar(where: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ScenarioError(f"{where}: expected a string or number")
    return str(value)


def _template(where: str, values: dict[str, Any]) -> Template:
    """VM TEMPLATE: KEY: scalar, KEY: {SUB: scalar} (vector) or KEY: [vector, ...]."""
    out: Template = {}
    for key, value in values.items():
        name, at = str(key).upper(), f"{where}.{key}"
        if isinstance(value, dict):
            out[name] = {str(k).upper(): _scalar(f"{at}.{k}", v) for k, v in value.items()}
        elif isinstance(value, list):
            if not all(isinstance(v, dict) for v in value):
                raise ScenarioError(f"{at}: expected a list of objects")
            out[name] = [{str(k).upper(): _scalar(f"{at}.{k}", x) for k, x in v.items()}
                         for v in value]  # fmt: skip
        else:
            out[name] = _scalar(at, value)
    return out


_HOST_KEYS = {"id", "name", "state", "cores", "memory_gb", "cluster", "cluster_id", "template"}
_VM_KEYS = {"id", "name", "owner", "uid", "group", "gid", "state", "lcm_state", "host", "cpu",
            "vcpu", "memory_mb", "stime", "template", "user_template", "monitoring"}  # fmt: skip


def _check_keys(where: str, obj: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected an object")
    unknown = set(obj) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    return obj


def _host(where: str, obj: Any, index: int, now: int) -> Host:
    obj = _check_keys(where, obj, _HOST_KEYS)
    hid = _get(where, obj, "id", int, index)
    state = _name(f"{where}.state", obj.get("state", "MONITORED"), HOST_BY_NAME)
    return Host(
        id=hid, name=_get(where, obj, "name", str, f"host{hid:02d}"), state=state,
        prev_state=state, cores=_get(where, obj, "cores", int, 16),
        memory_kb=_get(where, obj, "memory_gb", int, 64) * 1024 * 1024,
        cluster=_get(where, obj, "cluster", str, "default"),
        cluster_id=_get(where, obj, "cluster_id", int, 0),
        template=_attrs(where, obj, "template"), last_mon=now,
    )  # fmt: skip


def _vm(
    where: str, obj: Any, index: int, hosts: dict[int, Host],
    users: dict[str, tuple[int, int, str]], now: int,
) -> Vm:  # fmt: skip
    obj = _check_keys(where, obj, _VM_KEYS)
    vid = _get(where, obj, "id", int, index)
    owner = _get(where, obj, "owner", str, "oneadmin")
    uid, gid, gname = users.setdefault(owner, (max(u[0] for u in users.values()) + 1, 1, "users"))
    state = _name(f"{where}.state", obj.get("state", "ACTIVE"), VM_BY_NAME)
    default_lcm = "RUNNING" if state == ACTIVE else "LCM_INIT"
    lcm = _name(f"{where}.lcm_state", obj.get("lcm_state", default_lcm), LCM_BY_NAME)
    cpu = obj.get("cpu", 1)
    if isinstance(cpu, bool) or not isinstance(cpu, int | float | str):
        raise ScenarioError(f"{where}.cpu: expected a number")
    template: Template = dict(default_template(vid))
    template.update(_template(f"{where}.template", _get(where, obj, "template", dict, {})))
    stime = _get(where, obj, "stime", int, now - 86400)
    vm = Vm(
        id=vid, name=_get(where, obj, "name", str, f"vm-{vid}"),
        uid=_get(where, obj, "uid", int, uid), gid=_get(where, obj, "gid", int, gid),
        uname=owner, gname=_get(where, obj, "group", str, gname), state=state,
        lcm_state=lcm, prev_state=state, prev_lcm_state=lcm, stime=stime, last_poll=now,
        cpu=str(cpu), vcpu=_get(where, obj, "vcpu", int, 1),
        memory_mb=_get(where, obj, "memory_mb", int, 1024), template=template,
        user_template=_attrs(where, obj, "user_template"),
        monitoring=_attrs(where, obj, "monitoring"),
        etime=now if state == DONE else 0,
    )  # fmt: skip
    if state in _WITH_HISTORY:
        host = _vm_host(where, obj, hosts, index)
        closed = 0 if state == ACTIVE else now
        vm.history.append(History(0, host.id, host.name, stime, closed, uid=vm.uid, gid=vm.gid))
    return vm


def _vm_host(where: str, obj: dict[str, Any], hosts: dict[int, Host], index: int) -> Host:
    if "host" not in obj:
        ids = sorted(hosts)
        return hosts[ids[index % len(ids)]]
    hid = _get(where, obj, "host", int, 0)
    if hid not in hosts:
        raise ScenarioError(f"{where}.host: no host with id {hid}")
    return hosts[hid]
