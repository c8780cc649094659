"""`python -m suspend_service.dbcheck URL`: exit 0 if that database answers, else 1.

Used by `make test` to decide which server databases to run the suite on. Quiet on purpose:
the Makefile prints what it decided.
"""

from __future__ import annotations

import sys

from suspend_service.env import database


def answers(url: str) -> bool:
    try:
        settings = database(url)
        if settings["ENGINE"].endswith("postgresql"):
            import psycopg

            psycopg.connect(
                dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
                host=settings["HOST"], port=settings["PORT"] or None, connect_timeout=3,
            ).close()  # fmt: skip
        elif settings["ENGINE"].endswith("mysql"):
            import MySQLdb  # type: ignore[import-untyped,import-not-found,unused-ignore]

            MySQLdb.connect(
                database=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"],
                host=settings["HOST"], port=int(settings["PORT"] or 3306), connect_timeout=3,
            ).close()  # fmt: skip
        else:
            return True
    except Exception:  # driver missing or server down: both mean "not here"
        return False
    return True


if __name__ == "__main__":
    sys.exit(0 if answers(sys.argv[1]) else 1)
