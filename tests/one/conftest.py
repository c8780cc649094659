"""Fixtures for idlevm.one tests; makes the XML builders (one_xml.py) importable."""

from __future__ import annotations

import sys
from pathlib import Path

# The test tree has no packages, and pytest's import mode may not put this folder on
# sys.path: add it so `import one_xml` works under any mode.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
