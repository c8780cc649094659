"""Settings helpers fail loudly on values they cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from suspend_service import env


def test_booleans_accept_the_usual_spellings_and_reject_the_rest(monkeypatch):
    for raw, expected in [("1", True), ("Yes", True), ("off", False), ("0", False)]:
        monkeypatch.setenv("X_FLAG", raw)
        assert env.env_bool("X_FLAG", not expected) is expected
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG", False)


def test_numbers_name_the_variable_when_wrong(monkeypatch):
    monkeypatch.setenv("X_INT", "12x")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env.env_int("X_INT", 1)
    monkeypatch.setenv("X_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env.env_int("X_INT", 1, minimum=1)
    monkeypatch.setenv("X_FLOAT", "nan")
    with pytest.raises(ImproperlyConfigured, match="X_FLOAT"):
        env.env_float("X_FLOAT", 1.0)


def test_secret_key_is_required_without_debug_and_generated_once_with_it(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        env.secret_key(False, tmp_path)
    first = env.secret_key(True, tmp_path / "var")
    assert len(first) >= 50
    assert env.secret_key(True, tmp_path / "var") == first
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ImproperlyConfigured, match="too short"):
        env.secret_key(True, tmp_path)


def test_database_urls_for_each_backend():
    sqlite = env.database("sqlite:////tmp/x/idlevm.sqlite3")
    assert sqlite["ENGINE"].endswith("sqlite3") and sqlite["NAME"] == "/tmp/x/idlevm.sqlite3"
    assert env.database("sqlite:///var/db.sqlite3")["NAME"] == "var/db.sqlite3"
    assert env.database("sqlite:///x.sqlite3?timeout=5")["OPTIONS"]["timeout"] == 5.0
    pg = env.database("postgres://idle%40vm:p%2Fw@db.example.org:5433/idlevm?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "idle@vm",
        "p/w",
        "db.example.org",
        "5433",
        "idlevm",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    my = env.database("mysql://root@127.0.0.1:3306/test")
    assert my["ENGINE"] == "django.db.backends.mysql" and my["NAME"] == "test"


@pytest.mark.parametrize(
    "url, message",
    [("redis://x/0", "not supported"), ("postgres://host/", "database name"),
     ("postgres://host:99999/db", "port"), ("sqlite://", "needs a file"),
     ("sqlite:///x.sqlite3?timeout=soon", "timeout")],
)  # fmt: skip
def test_bad_database_urls_are_refused_clearly(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        env.database(url)


def test_settings_module_refuses_to_start_without_secret_key_in_production(tmp_path: Path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import suspend_service.settings"],
        env={"PATH": "/usr/bin:/bin", "DEBUG": "0", "IDLEVM_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_dbcheck_tells_a_database_that_answers_from_one_that_does_not(tmp_path):
    from suspend_service.dbcheck import answers

    assert answers(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert not answers("postgres://nobody@127.0.0.1:1/nothing")
    assert not answers("mysql://nobody@127.0.0.1:1/nothing")
