"""The deployment files (deploy/cron, deploy/systemd) run the suspension service as the README
says: one cycle every 5 minutes as user idlevm, with the production settings and environment.

The cron wrapper is run for real, against a fake install (a fake `venv/bin/python` that records
how it was called, a fake `logger` that records what reached syslog). The unit files are
checked by `systemd-analyze` when it is installed.

deploy/host/idlevm-tmpfiles.conf (the hypervisors' FIFO directory) is applied by the real
`systemd-tmpfiles --root` to a scratch tree whose /etc/passwd names us oneadmin.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from idlevm.host import fifo

ROOT = Path(__file__).resolve().parents[2]
CRON = ROOT / "deploy" / "cron" / "idlevm"
WRAPPER = ROOT / "deploy" / "cron" / "idlevm-cycle"
SYSTEMD = ROOT / "deploy" / "systemd"
CYCLE = SYSTEMD / "idlevm-cycle.service"
TIMER = SYSTEMD / "idlevm-cycle.timer"
DAEMON = SYSTEMD / "idlevm-service.service"
INSTALL = "/opt/idlevm"
PYTHON = f"{INSTALL}/venv/bin/python"
SERVICE = ["manage.py", "suspend_service", "--settings=suspend_service.settings"]
ENV_FILE = "/etc/idlevm/idlevm.env"
SH = shutil.which("sh") or "/bin/sh"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
TMPFILES = ROOT / "deploy" / "host" / "idlevm-tmpfiles.conf"
SYSTEMD_TMPFILES = shutil.which("systemd-tmpfiles")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)"
)

# A value with every character the shell would act on, single-quoted as the wrapper asks:
# sh and systemd's EnvironmentFile= both read it literally.
SECRET = 'k$(touch pwned)`touch pwned`!&;|<>#"\\ $HOME 0123456789abcdef0123456789'
ENV_TEXT = f"""\
# like /etc/idlevm/idlevm.env
SECRET_KEY='{SECRET}'
DATABASE_URL=postgres://idlevm@dbhost/idlevm
ONE_XMLRPC=http://one-frontend:2633/RPC2
ONE_AUTH=/etc/idlevm/one_auth
"""


# --- reading the files --------------------------------------------------------------------


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: continuation lines are not expected"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a setting: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}: expected one value, found {found}"
    return found[0]


def seconds(span: str) -> float:
    """A systemd time span ("90s", "1min 30s", "5min", "90") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    return sum(float(n) * units[u] for n, u in parts)


def cron_entries() -> tuple[dict[str, str], list[list[str]]]:
    """The cron file's variables, and its jobs as [m, h, dom, mon, dow, user, command]."""
    variables: dict[str, str] = {}
    jobs: list[list[str]] = []
    for raw in CRON.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            name, _, val = line.partition("=")
            variables[name.strip()] = val.strip()
        else:
            fields = line.split(None, 6)
            assert len(fields) == 7, f"not a cron.d job line (user field?): {raw!r}"
            jobs.append(fields)
    return variables, jobs


# --- a fake install for the cron wrapper ------------------------------------------------------


@dataclass
class Install:
    root: Path
    home: Path
    env_file: Path
    bin: Path

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def syslog(self) -> Path:
        return self.root / "syslog"

    def called(self) -> dict:
        return json.loads(self.record.read_text())

    def run(
        self, *args: str, status: int = 0, logger_status: int = 0, command: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the wrapper (or `command`) with a cron-like environment and the fakes."""
        cron_path = cron_entries()[0]["PATH"]
        env = {
            "PATH": f"{self.bin}:{cron_path}",
            "SHELL": "/bin/sh",
            "HOME": str(self.root),
            "LOGNAME": "idlevm",
            "IDLEVM_HOME": str(self.home),
            "IDLEVM_ENV": str(self.env_file),
            "FAKE_RECORD": str(self.record),
            "FAKE_SYSLOG": str(self.syslog),
            "FAKE_STATUS": str(status),
            "FAKE_LOGGER_STATUS": str(logger_status),
        }
        argv = command or [SH, str(WRAPPER), *args]
        return subprocess.run(
            argv, env=env, cwd=self.root, capture_output=True, text=True, timeout=30
        )


FAKE_PYTHON = """\
import json, os, sys
with open(os.environ["FAKE_RECORD"], "w") as fh:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}, fh)
print("cycle summary on stdout")
print("a warning on stderr", file=sys.stderr)
sys.exit(int(os.environ["FAKE_STATUS"]))
"""

# Records its arguments and the text it was given; exits as told (a syslog that refuses).
FAKE_LOGGER = """\
#!/bin/sh
{ printf 'logger %s\\n' "$*"; cat; } >> "$FAKE_SYSLOG"
exit "$FAKE_LOGGER_STATUS"
"""


@pytest.fixture
def install(tmp_path: Path) -> Install:
    home = tmp_path / "opt-idlevm"
    (home / "venv" / "bin").mkdir(parents=True)
    python = home / "venv" / "bin" / "python"
    python.write_text(f"#!{sys.executable}\n{FAKE_PYTHON}")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    logger = fake_bin / "logger"
    logger.write_text(FAKE_LOGGER)
    for script in (python, logger):
        script.chmod(0o755)
    env_file = tmp_path / "idlevm.env"
    env_file.write_text(ENV_TEXT)
    return Install(tmp_path, home, env_file, fake_bin)


# --- cron ---------------------------------------------------------------------------------


def test_cron_runs_the_wrapper_every_five_minutes_as_idlevm():
    text = CRON.read_text()
    # cron ignores a cron.d file with a dot in its name or without the final newline.
    assert "." not in CRON.name and text.endswith("\n")
    variables, jobs = cron_entries()
    assert variables["SHELL"] == "/bin/sh"
    assert {"/usr/bin", "/bin"} <= set(variables["PATH"].split(":"))
    assert "MAILTO" not in variables and re.search(r"^#\s*MAILTO=\S+@", text, re.M)
    assert len(jobs) == 1
    *schedule, user, command = jobs[0]
    assert " ".join(schedule) == "*/5 * * * *"
    assert user == "idlevm"
    assert shlex.split(command) == ["/bin/sh", f"{INSTALL}/deploy/cron/idlevm-cycle"]


def test_every_cron_line_is_explained_by_the_comment_above_it():
    lines = CRON.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert number > 0 and lines[number - 1].startswith("#"), f"uncommented: {line!r}"


def test_the_cron_command_runs_one_cycle_with_the_production_settings_and_env_file(install):
    command = cron_entries()[1][0][6]
    # The code is installed in /opt/idlevm; here it is this checkout.
    argv = [arg.replace(f"{INSTALL}/", f"{ROOT}/") for arg in shlex.split(command)]
    result = install.run(command=argv)
    assert result.returncode == 0, result.stderr
    called = install.called()
    assert called["argv"] == [*SERVICE, "--once"]
    assert Path(called["cwd"]) == install.home
    env = called["env"]
    assert env["SECRET_KEY"] == SECRET  # loaded, exported, taken literally
    assert not (install.root / "pwned").exists() and not (install.home / "pwned").exists()
    assert env["DATABASE_URL"] == "postgres://idlevm@dbhost/idlevm"
    assert env["ONE_XMLRPC"] == "http://one-frontend:2633/RPC2"
    assert env["ONE_AUTH"] == "/etc/idlevm/one_auth"
    assert env["IDLEVM_VAR_DIR"] == "/var/lib/idlevm"  # the systemd units' StateDirectory
    # cron and systemd start the very same command.
    cycle = read_unit(CYCLE)
    assert shlex.split(value(cycle, "Service", "ExecStart"))[1:] == called["argv"]
    # A good cycle: everything to syslog, nothing for cron to mail.
    assert (result.stdout, result.stderr) == ("", "")
    syslog = install.syslog.read_text()
    assert "-t idlevm -p user.info" in syslog
    assert "cycle summary on stdout" in syslog and "a warning on stderr" in syslog


@pytest.mark.parametrize(
    "status, priority", [(0, "info"), (1, "err"), (75, "warning")], ids=["ok", "failed", "skipped"]
)
def test_wrapper_exits_with_the_service_status_and_mails_all_but_success(install, status, priority):
    result = install.run(status=status)
    assert result.returncode == status
    assert f"-p user.{priority}" in install.syslog.read_text()
    assert result.stdout == ""
    if status == 0:
        assert result.stderr == ""
    else:  # stderr: cron mails it
        assert "cycle summary on stdout" in result.stderr
        assert "a warning on stderr" in result.stderr
        assert f"exited with status {status}" in result.stderr


def test_wrapper_passes_extra_arguments_to_the_service(install):
    assert install.run("--dry-run").returncode == 0
    assert install.called()["argv"] == [*SERVICE, "--once", "--dry-run"]


def test_wrapper_mails_a_good_cycle_s_output_when_syslog_refuses_it(install):
    result = install.run(status=0, logger_status=1)
    assert result.returncode == 0
    assert "cycle summary on stdout" in result.stderr


@pytest.mark.parametrize(
    "env_text", [None, "SECRET_KEY='never closed\n"], ids=["missing", "not-shell-syntax"]
)
def test_wrapper_refuses_an_unusable_env_file_without_starting_the_service(install, env_text):
    if env_text is None:
        install.env_file.unlink()
    else:
        install.env_file.write_text(env_text)
    result = install.run()
    assert result.returncode == 78  # EX_CONFIG: distinct from the service's own statuses
    assert str(install.env_file) in result.stderr
    assert str(install.env_file) in install.syslog.read_text()
    assert not install.record.exists()


def test_wrapper_is_posix_sh():
    assert WRAPPER.read_text().startswith("#!/bin/sh\n")
    for shell in ("sh", "dash", "posh"):
        if path := shutil.which(shell):
            checked = subprocess.run([path, "-n", str(WRAPPER)], capture_output=True, text=True)
            assert checked.returncode == 0, f"{shell}: {checked.stderr}"


# --- systemd ------------------------------------------------------------------------------


def test_timer_starts_the_oneshot_cycle_every_five_minutes():
    timer = read_unit(TIMER)
    assert values(timer, "Timer", "OnCalendar") == ["*:0/5"]
    assert not [k for k, _ in timer["Timer"] if k.startswith(("OnUnit", "OnBoot", "OnActive"))]
    assert seconds(value(timer, "Timer", "AccuracySec")) <= 60
    assert value(timer, "Timer", "Persistent") in {"true", "yes"}
    # Unit= defaults to the service of the timer's name, which must exist and be the oneshot.
    assert values(timer, "Timer", "Unit") in ([], ["idlevm-cycle.service"])
    assert value(read_unit(CYCLE), "Service", "Type") == "oneshot"
    assert value(timer, "Install", "WantedBy") == "timers.target"
    assert "idlevm-service.service" in value(timer, "Unit", "Conflicts").split()


@needs_systemd_analyze
def test_timer_calendar_elapses_every_five_minutes_on_the_clock():
    spec = value(read_unit(TIMER), "Timer", "OnCalendar")
    out = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", "--iterations=6", spec],
        capture_output=True, text=True, check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    stamps = list(dict.fromkeys(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out)))
    times = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in stamps]
    assert len(times) == 6
    assert all(t.minute % 5 == 0 and t.second == 0 for t in times)
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(times)} == {300}


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "ReadWritePaths": "/var/lib/idlevm",
    "StateDirectory": "idlevm",
    "CapabilityBoundingSet": "",
}


@pytest.mark.parametrize(
    "path, mode", [(CYCLE, "--once"), (DAEMON, "--loop")], ids=["cycle", "loop"]
)
def test_both_services_run_the_service_as_idlevm_hardened(path, mode):
    unit = read_unit(path)
    assert shlex.split(value(unit, "Service", "ExecStart")) == [PYTHON, *SERVICE, mode]
    assert value(unit, "Service", "User") == value(unit, "Service", "Group") == "idlevm"
    assert value(unit, "Service", "WorkingDirectory") == INSTALL
    assert value(unit, "Service", "EnvironmentFile") == ENV_FILE
    for key, expected in HARDENING.items():
        assert value(unit, "Service", key) == expected, key
    header = path.read_text().split("\n[", 1)[0]
    assert "EITHER" in header and "never both" in header
    assert "systemctl daemon-reload" in header and "enable --now" in header


def test_the_cycle_counts_a_skip_as_success_and_cannot_hang_forever():
    cycle = read_unit(CYCLE)
    assert "75" in " ".join(values(cycle, "Service", "SuccessExitStatus")).split()
    assert 0 < seconds(value(cycle, "Service", "TimeoutStartSec")) <= 3600
    assert "Install" not in cycle  # started by the timer, never enabled itself


def test_the_daemon_restarts_on_failure_and_has_time_to_finish_an_action_on_sigterm():
    daemon = read_unit(DAEMON)
    assert value(daemon, "Service", "Type") == "simple"
    assert value(daemon, "Service", "Restart") == "on-failure"
    assert value(daemon, "Service", "KillSignal") == "SIGTERM"
    # One OpenNebula call may last ONE_TIMEOUT (60 s by default).
    assert seconds(value(daemon, "Service", "TimeoutStopSec")) >= 90
    assert value(daemon, "Install", "WantedBy") == "multi-user.target"


@needs_systemd_analyze
def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists and is executable; /opt/idlevm is not
    # installed here, so the copies run /bin/true instead. Everything else is verbatim.
    for path in (CYCLE, TIMER, DAEMON):
        text = path.read_text()
        if path.suffix == ".service":
            assert text.count(f"ExecStart={PYTHON} ") == 1
            text = text.replace(f"ExecStart={PYTHON} ", "ExecStart=/bin/true ")
        (tmp_path / path.name).write_text(text)

    def verify(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    names = (CYCLE.name, TIMER.name, DAEMON.name)
    result = verify(*names)
    # Unknown keys and bad values are only warnings (exit status 0): the output is the check.
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == "", result
    # ...and this systemd-analyze does report them, so the empty output above means something.
    broken = tmp_path / TIMER.name
    broken.write_text(broken.read_text().replace("AccuracySec=", "AccuracySek="))
    assert "AccuracySek" in verify(*names).stderr


@needs_systemd_analyze
@pytest.mark.parametrize("path", [CYCLE, DAEMON], ids=["cycle", "loop"])
def test_services_score_low_exposure_in_systemd_analyze_security(path):
    version = subprocess.run([SYSTEMD_ANALYZE, "--version"], capture_output=True, text=True)
    if int(re.match(r"systemd (\d+)", version.stdout).group(1)) < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250")
    # --threshold is on a 0-100 scale: exit status 1 above an exposure of 2.5 ("OK" is < 5).
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=25", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-600:] + result.stderr


# --- the hosts' tmpfiles.d entry for the FIFO directory -------------------------------------


def tmpfiles_lines() -> list[list[str]]:
    """The tmpfiles.d lines: type, path, mode, user, group, age (argument: none here)."""
    lines = []
    for raw in TMPFILES.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            fields = line.split()
            assert 2 <= len(fields) <= 6, f"not a tmpfiles.d line (or an argument?): {raw!r}"
            lines.append(fields + ["-"] * (6 - len(fields)))  # "-": the default, as omitted
    return lines


def test_tmpfiles_makes_the_fifo_directory_oneadmins_and_keeps_it_from_aging():
    mode = f"{fifo.DIR_MODE:04o}"
    assert tmpfiles_lines() == [
        ["d", fifo.DEFAULT_DIR, mode, "oneadmin", "oneadmin", "-"],  # made at boot, no aging
        ["x", fifo.DEFAULT_DIR, "-", "-", "-", "-"],  # excluded from /tmp's cleanup, contents too
    ]
    text = TMPFILES.read_text()
    assert "/etc/tmpfiles.d/idlevm.conf" in text  # where it goes, said in the file


def fake_root(tmp_path: Path) -> Path:
    """A --root for systemd-tmpfiles whose oneadmin is us: chown needs no privilege."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    uid, gid = os.getuid(), os.getgid()
    (root / "etc" / "passwd").write_text(f"oneadmin:x:{uid}:{gid}::/var/lib/one:/bin/sh\n")
    (root / "etc" / "group").write_text(f"oneadmin:x:{gid}:\n")
    return root


def tmpfiles(root: Path, *args: str, configs: list[Path]) -> None:
    command = [SYSTEMD_TMPFILES, f"--root={root}", *args, *map(str, configs)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(SYSTEMD_TMPFILES is None, reason="systemd-tmpfiles is not installed")
def test_systemd_tmpfiles_creates_a_directory_vmm_prepare_accepts(tmp_path):
    root = fake_root(tmp_path)
    tmpfiles(root, "--create", configs=[TMPFILES])
    made = root / fifo.DEFAULT_DIR.lstrip("/")
    info = made.lstat()
    assert stat.S_ISDIR(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (
        0o700, os.getuid(), os.getgid()
    )  # fmt: skip
    said: list[str] = []
    fifo.prepare_fifos(str(made), 42, report=said.append)  # as is: no "created directory"
    assert said == [f"created FIFO {made}/one42.{end} (0600)" for end in ("in", "out")]


@pytest.mark.skipif(SYSTEMD_TMPFILES is None, reason="systemd-tmpfiles is not installed")
def test_tmp_aging_spares_the_fifos_only_with_the_idlevm_conf(tmp_path):
    # /tmp aged after 1 s, as Red Hat's `q /tmp 1777 root root 10d` after 10 days
    aging = tmp_path / "tmp.conf"
    aging.write_text("d /tmp 1777 root root 1s\n")
    roots = {ours: fake_root(tmp_path / str(ours)) for ours in (True, False)}
    for root in roots.values():
        serial = root / "tmp" / "vm_serial"
        serial.mkdir(parents=True, mode=0o700)
        os.mkfifo(serial / "one42.out", 0o600)
        (root / "tmp" / "stray").write_text("old\n")
    time.sleep(2.2)  # ctime cannot be set back: wait
    for ours, root in roots.items():
        tmpfiles(root, "--clean", configs=[aging, TMPFILES] if ours else [aging])
        assert not (root / "tmp" / "stray").exists()  # the aging did run
        assert (root / "tmp" / "vm_serial" / "one42.out").exists() == ours
