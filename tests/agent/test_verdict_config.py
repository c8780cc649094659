"""The verdict (thresholds, since, the idle window) and the config file."""

import pytest

from idlevm.agent import config as config_module
from idlevm.agent.config import Config
from idlevm.agent.verdict import Tracker, busy_reasons

QUIET = {"cpu": 0.5, "steal": 40.0, "load": 0.1, "disk": 4096, "rx": 100, "tx": 100}


def test_quiet_vm_is_idle_and_steal_does_not_count():
    assert busy_reasons(QUIET, Config()) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [("cpu", 3.0), ("load", 0.5), ("disk", 100000), ("rx", 2000), ("tx", 1000), ("gpu", 5)],
)
def test_each_threshold(key, value):
    assert busy_reasons(dict(QUIET, **{key: value}), Config()) == [key]
    assert busy_reasons(dict(QUIET, **{key: value * 0.99}), Config()) == []


def test_missing_cpu_is_busy_other_missing_signals_are_not():
    assert busy_reasons({"load": 0.0}, Config()) == ["cpu unknown"]
    assert busy_reasons({"cpu": 1.0}, Config()) == []


def test_sessions_count_only_with_recent_input():
    config = Config(input_idle_seconds=3600)
    assert busy_reasons(dict(QUIET, sess=2, input=3599), config) == ["input"]
    assert busy_reasons(dict(QUIET, sess=2, input=3600), config) == []
    assert busy_reasons(dict(QUIET, sess=0), config) == []
    assert busy_reasons(dict(QUIET, procs=1), config) == ["procs"]


def test_tracker_since_and_reset():
    tracker = Tracker()
    assert tracker.update(False, 1000, 10) == ("busy", 0)
    assert tracker.update(True, 1060, 70) == ("idle", 1060)
    assert tracker.update(True, 1120, 130) == ("idle", 1060)
    assert tracker.update(False, 1180, 190) == ("busy", 0)  # one busy sample ends it
    assert tracker.update(True, 1240, 250) == ("idle", 1240)
    assert tracker.update(True, 1000, 310) == ("idle", 1000)  # clock set back: since <= ts


def test_tracker_idle_window():
    tracker = Tracker(idle_window=120)
    assert tracker.update(True, 1000, 0) == ("busy", 0)
    assert tracker.update(True, 1060, 60) == ("busy", 0)
    assert tracker.update(True, 1120, 120) == ("idle", 1000)


def test_config_defaults_when_file_missing(tmp_path, capsys):
    config = config_module.load(str(tmp_path / "absent.conf"))
    assert config.log == "/dev/ttyS0" and config.interval == 60 and config.cpu_pct == 3.0
    assert "using defaults" in capsys.readouterr().err


def test_config_values_and_bad_values(tmp_path, capsys):
    path = tmp_path / "agent.conf"
    path.write_text(
        "[agent]\nLOG = /var/log/idlevm.log\ninterval = 15\nCPU_PCT = 2.5\nLOAD = lots\n"
        "DISK_BPS = -1\nNET_RX_BPS = nan\nINTERVAL_TYPO = 3\n"
        "IGNORE_USERS = root, ansible\n"
        "BUSY_PROCESSES = slurmd-job,matlab,a-very-long-process-name\n"
    )
    config = config_module.load(str(path))
    assert config.log == "/var/log/idlevm.log"
    assert config.interval == 15 and config.cpu_pct == 2.5
    assert config.load == 0.5 and config.disk_bps == 100000.0 and config.net_rx_bps == 2000.0
    assert config.ignore_users == {"root", "ansible"}
    assert config.busy_processes == {"slurmd-job", "matlab", "a-very-long-pro"}
    err = capsys.readouterr().err
    for key in ("LOAD", "DISK_BPS", "NET_RX_BPS", "INTERVAL_TYPO"):
        assert key in err


@pytest.mark.parametrize("text", ["not an ini file", "[other]\nLOG = -\n", "\xff\xfe"])
def test_config_unusable_file(tmp_path, capsys, text):
    path = tmp_path / "agent.conf"
    path.write_bytes(text.encode("latin-1"))
    assert config_module.load(str(path)).interval == 60
    assert "using defaults" in capsys.readouterr().err


def test_interval_minimum(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_text("[agent]\nINTERVAL = 0\n")
    assert config_module.load(str(path)).interval == 60
