"""Endpoint and session lookup, as OpenNebula's own tools do it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from idlevm.one.auth import (
    DEFAULT_ENDPOINT,
    Credentials,
    credentials_from_env,
    endpoint_from_env,
    find_auth_file,
    parse_session,
)
from idlevm.one.client import OneClient
from idlevm.one.errors import OneConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "home": home,
        "user_file": home / ".one" / "one_auth",
        "env_file": tmp_path / "env_auth",
        "system": tmp_path / "var" / "one_auth",
    }


def test_endpoint() -> None:
    assert endpoint_from_env({}) == DEFAULT_ENDPOINT == "http://localhost:2633/RPC2"
    assert endpoint_from_env({"ONE_XMLRPC": "http://one:2633/RPC2"}) == "http://one:2633/RPC2"


def test_lookup_order(dirs: dict[str, Path]) -> None:
    env = {"ONE_AUTH": str(dirs["env_file"]), "HOME": str(dirs["home"])}
    write(dirs["system"], "sys:pw3\n")
    assert credentials_from_env(env, dirs["system"]).user == "sys"
    write(dirs["user_file"], "home:pw2\n")
    assert credentials_from_env(env, dirs["system"]).user == "home"
    write(dirs["env_file"], "envuser:pw1 \n\n")
    creds = credentials_from_env(env, dirs["system"])
    assert (creds.user, creds.password, creds.session) == ("envuser", "pw1", "envuser:pw1")


def test_one_auth_naming_a_directory_is_skipped(dirs: dict[str, Path]) -> None:
    write(dirs["user_file"], "home:pw\n")
    env = {"ONE_AUTH": str(dirs["home"]), "HOME": str(dirs["home"])}
    assert find_auth_file(env, dirs["system"]) == dirs["user_file"]


def test_real_environment(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    write(dirs["env_file"], "alice:pw\n")
    monkeypatch.setenv("ONE_AUTH", str(dirs["env_file"]))
    monkeypatch.setenv("ONE_XMLRPC", "http://127.0.0.1:1/RPC2")
    client = OneClient.from_environment()
    assert client.url == "http://127.0.0.1:1/RPC2" and "pw" not in repr(client)


def test_nothing_found_names_paths(dirs: dict[str, Path]) -> None:
    with pytest.raises(OneConfigError, match="no OpenNebula auth file") as info:
        credentials_from_env({"HOME": str(dirs["home"])}, dirs["system"])
    assert str(dirs["system"]) in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("nocolon\n", "user:password"),
        (":pw\n", "user:password"),
        ("someone:\n", "user:password"),
        ("a:b\nc:d\n", "single line"),
    ],
)
def test_malformed_files(dirs: dict[str, Path], content: str, needle: str) -> None:
    path = write(dirs["env_file"], content)
    with pytest.raises(OneConfigError, match=needle) as info:
        credentials_from_env({"ONE_AUTH": str(path)}, dirs["system"])
    message = str(info.value)
    assert str(path) in message
    if content.strip():
        assert content.strip().splitlines()[-1] not in message.replace(str(path), "")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(dirs: dict[str, Path]) -> None:
    path = write(dirs["env_file"], "user:topsecret\n")
    path.chmod(0)
    with pytest.raises(OneConfigError, match="cannot read") as info:
        credentials_from_env({"ONE_AUTH": str(path)}, dirs["system"])
    assert str(path) in str(info.value) and "topsecret" not in str(info.value)


def test_password_may_contain_colons_and_is_hidden() -> None:
    creds = parse_session("bob:pa:ss:word")
    assert creds.password == "pa:ss:word"
    assert "pa:ss" not in repr(creds) and "pa:ss" not in str(creds) and "bob" in str(creds)
    assert isinstance(creds, Credentials)
