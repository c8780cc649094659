"""idlevm: find idle virtual machines in OpenNebula clouds and reclaim them by rules."""

__version__ = "0.1.0"  # keep equal to pyproject.toml (a test checks)
