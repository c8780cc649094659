"""Entry point: `python3 -m idlevm.agent`, and the zipapp's `idlevm.agent.__main__:main`."""

import sys

from .daemon import main as run


def main():
    # The zipapp's generated __main__ ignores the return value: exit here.
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
