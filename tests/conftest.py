"""Shared fixtures: a real simulator over HTTP, and the settings it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def python36() -> str:
    """The path of a real Python 3.6 (the oldest the agent and the host side support: old VM
    images and hypervisors), from pyenv or PATH; the test is skipped, saying why, without one.
    """
    import glob
    import os
    import shutil
    import subprocess

    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    on_path = shutil.which("python3.6")
    if on_path and "/shims/" not in on_path:  # a pyenv shim fails unless 3.6 is selected
        found.append(on_path)
    if not found:
        pytest.skip("no Python 3.6 installed (pyenv install 3.6, or python3.6 on PATH)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    check = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        proc = subprocess.run(
            [found[0], "-c", check], env=env, stdout=subprocess.PIPE, timeout=30, check=False
        )
    except OSError as error:
        pytest.skip(f"{found[0]} does not run: {error}")
    if proc.returncode != 0 or proc.stdout.strip() != b"3.6":
        pytest.skip(f"{found[0]} is not a working Python 3.6 ({proc.stdout.strip()!r})")
    return found[0]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Tests create users with passwords: the real hasher costs about a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def onesim() -> Iterator[Any]:
    """A simulator on a free port: 2 hosts, 30 VMs (every state kind, most running)."""
    from idlevm.onesim.testing import running_simulator

    with running_simulator(hosts=2, vms=30, seed=1) as sim:
        yield sim


@pytest.fixture
def one_settings(settings: Any, onesim: Any, tmp_path: Any) -> Any:
    """Point the service's settings at the simulator, with a real ONE_AUTH file."""
    auth = tmp_path / "one_auth"
    auth.write_text(onesim.session + "\n")
    settings.ONE_XMLRPC = onesim.url
    settings.ONE_AUTH = str(auth)
    settings.ONE_CONNECT_TIMEOUT = 2.0
    settings.ONE_TIMEOUT = 5.0
    return settings


# Tests that reach the database through one of these (directly or through other fixtures).
_DB_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
     "live_server", "admin_user", "admin_client"}
)  # fmt: skip


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """On the server-database passes (`make test` sets DB_TESTS_ONLY), run only the tests
    that use the database: pytest-django blocks every other test from it, so those cannot
    behave differently from the SQLite pass, which runs them all."""
    import os

    if not os.environ.get("DB_TESTS_ONLY"):
        return
    keep, drop = [], []
    for item in items:
        uses_db = item.get_closest_marker("django_db") or _DB_FIXTURES & set(item.fixturenames)
        (keep if uses_db else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
