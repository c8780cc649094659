"""The installed host library records idlevm.__version__: it must be the package's."""

import tomllib
from pathlib import Path

import idlevm

REPO = Path(__file__).resolve().parents[2]


def test_package_version_is_the_one_pyproject_declares():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert idlevm.__version__ == declared
