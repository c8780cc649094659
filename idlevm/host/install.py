"""Install idlevm into OpenNebula's remotes folder (or take it out again).

    python3 -m idlevm.host.install [--remotes /var/lib/one/remotes] [--dry-run]
                                   [--deploy-input auto|stdin|file] [--uninstall]

Puts in the remotes: wrappers around the kvm driver's deploy, save, restore, cancel, shutdown
and migrate (the originals kept beside them as <name>.idlevm-orig), the monitoring probes,
and the library they run (idlevm-lib/, with a MANIFEST). `onehost sync --force` then copies
it all to the hosts. A rerun changes nothing; after an OpenNebula upgrade it wraps the new
scripts. Everything is checked before anything is written: a refusal changes nothing.
--deploy-input: whether the original deploy reads the domain XML from stdin (OpenNebula 4+)
or finds it in its first argument (3.x); auto reads that from the script's text.
Exit status: 0 done, 1 failed or refused, 2 usage error.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import idlevm
from idlevm.host import fifo
from idlevm.host import wrappers as scripts

DEFAULT_REMOTES = "/var/lib/one/remotes"
LIB_DIR = "idlevm-lib"
MANIFEST = LIB_DIR + "/MANIFEST"
KVM = "vmm/kvm"
CLASSIC_PROBES = {"im/kvm.d/idle.sh": "host"}  # OpenNebula 3.x runs every script in kvm.d
PROBES = "im/kvm-probes.d/"  # current versions: host/system (host attributes), vm/monitor
CURRENT_PROBES = {PROBES + "host/system/idle.sh": "host", PROBES + "vm/monitor/idle.sh": "vm"}
# A domain deployed through our wrapper names the FIFOs; libvirt keeps that domain in the
# checkpoint (suspend, stop, cold migration) and sends it on a live migration, and QEMU will
# not start it without them. Without our restore and migrate wrappers nobody makes them.
UNINSTALL_WARNING = f"""\
warning: every VM deployed while idlevm was installed has a serial port on the FIFOs
  {fifo.DEFAULT_DIR}/one<ID>.in/.out (or in IDLEVM_SERIAL_DIR) in its libvirt domain, and keeps
  it in its checkpoint (suspend, stop, cold migration) and in a live migration. Once idlevm
  is uninstalled nothing creates those FIFOs, and QEMU refuses to start without them:
  resuming a suspended or stopped VM, or migrating one, FAILS for those VMs. Uninstall only
  when none of them will be restored or migrated, or first power them off and resume them
  (or undeploy and redeploy them: a fresh deploy has no serial port once the wrapper is
  gone). Keeping the FIFOs in {fifo.DEFAULT_DIR} is not enough: they are gone after a host
  reboot."""


class InstallError(Exception):
    """An expected failure (layout, symlink, damaged install): a message, no traceback."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Plan:
    """Lines to print and steps to take, in order: all checked before anything is done."""

    def __init__(self) -> None:
        self.entries = []  # type: List[Tuple[str, Optional[Callable[..., None]], Tuple[Any, ...]]]
        self.refused = []  # type: List[str]
        self.warnings = []  # type: List[str]

    def note(self, text: str) -> None:
        self.entries.append((text, None, ()))

    def step(self, text: str, action: Callable[..., None], *args: Any) -> None:
        self.entries.append((text, action, args))

    def warn(self, text: str) -> None:
        """Printed on stderr after the steps, dry run or not."""
        self.warnings.append(text)

    def refuse(self, text: str) -> None:
        self.refused.append(text)
        self.entries.append(("refused: " + text, None, ()))

    def run(self, dry_run: bool) -> None:
        for text, action, args in self.entries:
            if action is not None and dry_run:
                text = "would " + text
            elif action is not None:
                action(*args)
            print(text, file=sys.stderr if text.startswith("refused") else sys.stdout)
        sys.stdout.flush()  # the warnings come last, whichever stream is read first
        for text in self.warnings:
            print(text, file=sys.stderr)


class Tree:
    """The remotes folder, by paths relative to it ("vmm/kvm/deploy"). Writes are atomic
    (a temporary file renamed into place) and never go through a symbolic link."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    def isdir(self, rel: str) -> bool:
        return os.path.isdir(self.path(rel))

    def refuse_symlinks(self, *paths: str) -> None:
        """Refuse paths with a symbolic link below the root (the root itself may be one)."""
        for rel in paths:
            parts = rel.split("/")
            for link in ("/".join(parts[:end]) for end in range(1, len(parts) + 1)):
                if os.path.islink(self.path(link)):
                    raise InstallError(f"{link} is a symbolic link: refusing to write through it")

    def read(self, rel: str) -> Optional[bytes]:
        try:
            with open(self.path(rel), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def same(self, rel: str, data: bytes, mode: int) -> bool:
        """Whether the file holds exactly `data` with permissions `mode`."""
        try:
            return os.lstat(self.path(rel)).st_mode & 0o7777 == mode and self.read(rel) == data
        except FileNotFoundError:
            return False

    def _own(self, path: str) -> None:
        # Run as root, new files take the owner of their folder (oneadmin's, usually), so
        # that OpenNebula's own upgrades and this tool run as oneadmin can replace them.
        if os.geteuid() == 0:
            info = os.stat(os.path.dirname(path))
            os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)

    def write(self, rel: str, data: bytes, mode: int) -> None:
        path = self.path(rel)
        temp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".idlevm-new")
        self._remove_any(temp)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                os.fchmod(file.fileno(), mode)
            self._own(temp)
            os.replace(temp, path)
        finally:
            self._remove_any(temp)

    def wrap(self, rel: str, kept: str, wrapper: bytes) -> None:
        """Make `kept` the very file `rel` is (same bytes, mode, owner), then put the wrapper
        in its place. A hard link: the action never goes missing while OpenNebula calls it."""
        temp = self.path(kept) + ".idlevm-new"
        self._remove_any(temp)
        try:
            os.link(self.path(rel), temp)
        except OSError:  # a filesystem without hard links: copy bytes and mode
            shutil.copy2(self.path(rel), temp)
        os.replace(temp, self.path(kept))
        self.write(rel, wrapper, 0o755)

    def remove(self, rel: str) -> None:
        self._remove_any(self.path(rel))

    def same_dir(self, rel: str, content: Dict[str, bytes]) -> bool:
        """Whether directory `rel` holds exactly `content` (files 0644, folders 0755)."""
        top = self.path(rel)
        found = {}  # type: Dict[str, bytes]
        for folder, dirs, names in os.walk(top):
            for name in dirs + names:
                full = os.path.join(folder, name)
                if os.lstat(full).st_mode != (0o40755 if name in dirs else 0o100644):
                    return False  # a symlink, a FIFO, another mode: not ours as it should be
                if name in names:
                    with open(full, "rb") as file:
                        found[os.path.relpath(full, top)] = file.read()
        return os.path.isdir(top) and found == content

    def replace_dir(self, rel: str, content: Dict[str, bytes]) -> None:
        """Build the directory beside its place, then swap it in: never half-written."""
        final = self.path(rel)
        new, old = final + ".idlevm-new", final + ".idlevm-old"
        self._remove_any(new)
        self._remove_any(old)
        # Every folder holds a file (a package its __init__.py); parents sort first.
        for folder in sorted({os.path.dirname(name) for name in content} | {""}):
            path = os.path.normpath(os.path.join(new, folder))
            os.mkdir(path)
            os.chmod(path, 0o755)
            self._own(path)
        for name, data in sorted(content.items()):
            self.write(rel + ".idlevm-new/" + name, data, 0o644)
        if os.path.lexists(final):
            os.rename(final, old)
        os.rename(new, final)
        self._remove_any(old)

    @staticmethod
    def _remove_any(path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


# ---------------------------------------------------------------- install


def probe_layout(tree: Tree) -> Dict[str, str]:
    """The probes to install (path -> format), from the folders this OpenNebula has."""
    if not tree.isdir(KVM):
        raise InstallError(f"{tree.root} has no {KVM}: not OpenNebula's remotes?")
    if tree.isdir(PROBES + "host/system") and tree.isdir(PROBES + "vm/monitor"):
        # Current versions also have im/kvm.d, but it starts the monitoring daemon: no probe.
        return dict(CURRENT_PROBES)
    if os.path.lexists(tree.path("im/kvm-probes.d")):
        raise InstallError("im/kvm-probes.d without host/system and vm/monitor: unsupported")
    if tree.isdir("im/kvm.d"):
        return dict(CLASSIC_PROBES)
    raise InstallError(
        f"no probe folder in {tree.root}: neither im/kvm.d (OpenNebula 3.x) nor"
        " im/kvm-probes.d/host/system and vm/monitor (current)"
    )


def deploy_mode(tree: Tree, choice: str) -> Optional[str]:
    """stdin or file (None without a deploy script); says which and why."""
    script = tree.read(KVM + "/deploy")
    if script is None or scripts.is_ours(script):
        script = tree.read(KVM + "/deploy" + scripts.ORIGINAL_SUFFIX)
    if script is None:
        return None
    mode = "stdin" if scripts.reads_stdin(script) else "file"
    why = "auto: the original deploy " + (
        "reads the domain from stdin" if mode == "stdin" else "does not read stdin"
    )
    if choice != "auto":
        mode, why = choice, "--deploy-input"
    print(f"deploy input: {mode} ({why})")
    return mode


def plan_script(tree: Tree, plan: Plan, path: str, text: bytes, before: Optional[str]) -> None:
    """Plan (re)writing one of our scripts, unless up to date, not ours, or edited since."""
    tree.refuse_symlinks(path)
    current = tree.read(path)
    if current is not None and not scripts.is_ours(current):
        raise InstallError(f"{path} exists and is not ours: refusing to replace it")
    if tree.same(path, text, 0o755):
        plan.note("unchanged " + path)
    elif current is not None and before is not None and sha256(current) != before:
        raise InstallError(f"{path} was edited by hand since the install: move it away, rerun")
    else:
        why = "missing" if current is None else "outdated"
        plan.step(f"write {path} ({why})", tree.write, path, text, 0o755)


def plan_wrapper(
    tree: Tree, plan: Plan, name: str, text: bytes, before: Optional[str]
) -> Optional[str]:
    """Plan wrapping one action; the sha256 of its original (None: no such action)."""
    kept = name + scripts.ORIGINAL_SUFFIX
    tree.refuse_symlinks(name, kept)
    current, original = tree.read(name), tree.read(kept)
    if current is None and original is None:
        plan.note(f"skip {name} (not present)")
        return None
    if current is not None and not scripts.is_ours(current):
        what = "original kept as " + kept
        if original is not None:
            what = "not our wrapper: OpenNebula was upgraded; the new script becomes " + kept
        plan.step(f"wrap {name} ({what})", tree.wrap, name, kept, text)
        return sha256(current)
    if original is None:
        raise InstallError(f"{name} is our wrapper but {kept} is missing")
    plan_script(tree, plan, name, text, before)
    return sha256(original)


def library() -> Dict[str, bytes]:
    """The package the scripts run: idlevm/__init__.py, protocol.py and host/*.py."""
    package = os.path.dirname(os.path.abspath(idlevm.__file__))
    host = sorted(n for n in os.listdir(os.path.join(package, "host")) if n.endswith(".py"))
    found = {}
    for name in ["__init__.py", "protocol.py"] + ["host/" + n for n in host]:
        with open(os.path.join(package, name), "rb") as source:
            found["idlevm/" + name] = source.read()
    return found


def install(tree: Tree, plan: Plan, choice: str) -> None:
    probes = probe_layout(tree)
    mode = deploy_mode(tree, choice)
    try:
        before = read_manifest(tree)[0]  # what we wrote last time, by sha256
    except InstallError:  # none yet, or damaged: it is written anew
        before = {}
    written = {}  # type: Dict[str, str]
    wrapped = {}  # type: Dict[str, str]
    for action in scripts.ACTIONS:
        name, text = KVM + "/" + action, scripts.wrapper(action, mode or "stdin").encode()
        original = plan_wrapper(tree, plan, name, text, before.get(name))
        if original is not None:
            written[name], wrapped[name] = sha256(text), original
    for path, fmt in sorted(probes.items()):
        text = scripts.probe(path, fmt).encode()
        plan_script(tree, plan, path, text, before.get(path))
        written[path] = sha256(text)
    lib = library()
    written.update((LIB_DIR + "/" + name, sha256(data)) for name, data in lib.items())
    manifest = {
        "version": str(getattr(idlevm, "__version__", "unknown")),
        "files": written,  # what uninstall may remove, with the sha256 to check first
        "wrapped": wrapped,  # the sha256 of each original, checked before it is restored
        "deploy_input": mode,
    }
    lib["MANIFEST"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("ascii")
    tree.refuse_symlinks(LIB_DIR)
    if tree.same_dir(LIB_DIR, lib):
        plan.note(f"unchanged {LIB_DIR}/ ({len(lib)} files)")
    else:
        # First: if a later step fails, the MANIFEST is there for --uninstall to work from.
        what = f"write {LIB_DIR}/ ({len(lib)} files with the MANIFEST)"
        plan.entries.insert(0, (what, tree.replace_dir, (LIB_DIR, lib)))


# ---------------------------------------------------------------- uninstall


def read_manifest(tree: Tree) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The MANIFEST's files and wrapped originals (path -> sha256)."""
    tree.refuse_symlinks(MANIFEST)
    data = tree.read(MANIFEST)
    if data is None:
        raise InstallError(f"no {MANIFEST}: idlevm is not installed in {tree.root}")
    try:
        content = json.loads(data.decode("utf-8"))
        return dict(content["files"]), dict(content["wrapped"])
    except (ValueError, KeyError, TypeError) as error:
        raise InstallError(f"{MANIFEST} is damaged ({error})") from None


def plan_restore(tree: Tree, plan: Plan, name: str, original: str, wrapper: str) -> None:
    """Plan putting one original back, or refuse to (then it says why)."""
    kept = name + scripts.ORIGINAL_SUFFIX
    tree.refuse_symlinks(name, kept)
    current, saved = tree.read(name), tree.read(kept)
    ours = current is not None and scripts.is_ours(current)
    if saved is None and not ours:
        plan.note(f"skip {name} (not wrapped)")
    elif saved is None:
        plan.refuse(f"{kept} is missing: cannot restore {name}")
    elif sha256(saved) != original:
        plan.refuse(f"{kept} changed since the install: {name} left as it is")
    elif current is not None and not ours:
        plan.refuse(f"{name} was replaced since the install (upgrade?): kept; delete {kept}")
    elif current is not None and sha256(current) != wrapper:
        plan.refuse(f"{name} was edited by hand: not overwritten; the original is {kept}")
    else:
        plan.step(f"restore {name} from {kept}", os.replace, tree.path(kept), tree.path(name))


def uninstall(tree: Tree, plan: Plan) -> None:
    written, wrapped = read_manifest(tree)
    if KVM + "/deploy" in wrapped:  # else no VM got the serial port through us
        plan.warn(UNINSTALL_WARNING)
    # Only the paths this tool writes: the MANIFEST is a file in the remotes, not an order.
    for name in (KVM + "/" + action for action in scripts.ACTIONS if KVM + "/" + action in wrapped):
        plan_restore(tree, plan, name, wrapped[name], written.get(name, ""))
    for path in sorted((set(CLASSIC_PROBES) | set(CURRENT_PROBES)) & set(written)):
        tree.refuse_symlinks(path)
        current = tree.read(path)
        if current is None:
            plan.note(f"skip {path} (not present)")
        elif sha256(current) != written[path]:
            plan.refuse(f"{path} was edited by hand: not removed")
        else:
            plan.step("remove probe " + path, tree.remove, path)
    tree.refuse_symlinks(LIB_DIR)
    if plan.refused:
        plan.note(f"kept {LIB_DIR}/: its MANIFEST is needed to finish; fix the above, rerun")
    else:
        plan.step(f"remove {LIB_DIR}/", tree.remove, LIB_DIR)


# ---------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m idlevm.host.install",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--remotes", default=DEFAULT_REMOTES, help="default: %(default)s")
    parser.add_argument("--uninstall", action="store_true", help="restore the originals")
    parser.add_argument("--dry-run", action="store_true", help="say what, change nothing")
    parser.add_argument("--deploy-input", default="auto", choices=("auto", "stdin", "file"))
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    tree = Tree(os.path.abspath(args.remotes))
    plan = Plan()
    try:
        if not os.path.isdir(tree.root):
            raise InstallError(f"remotes folder {tree.root} not found")
        if args.uninstall:
            uninstall(tree, plan)
        else:
            install(tree, plan, args.deploy_input)
        plan.run(args.dry_run)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # permissions, a full disk: said plainly, no traceback
        where = f" {error.filename}:" if error.filename else ""
        print(f"error:{where} {error.strerror or error}", file=sys.stderr)
        return 1
    if args.dry_run:
        print("dry run: nothing changed")
    print("then run `onehost sync --force` to copy the remotes to every host")
    return 1 if plan.refused else 0


if __name__ == "__main__":
    sys.exit(main())
