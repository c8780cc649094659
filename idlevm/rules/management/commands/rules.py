"""`manage.py rules export [FILE]`, `rules import FILE [--replace] [--check]`, `rules reference`.

Rules as code: export every rule as YAML (stdout without FILE); import validates every rule
in the file first and changes nothing if any is invalid, then creates or updates by name
(`--replace` also deletes the rules the file does not name; `--check` only validates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from idlevm.rules.reference import reference_markdown
from idlevm.rules.rulefile import MAX_FILE_BYTES, RuleFileError, export_rules, import_rules


class Command(BaseCommand):
    help = "Export the rules to YAML, or import them from it (rules as code)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        export = sub.add_parser("export", help="write every rule as YAML")
        export.add_argument("file", nargs="?", help="write here instead of stdout")
        imp = sub.add_parser("import", help="validate, then create or update rules by name")
        imp.add_argument("file", help="a YAML rules file ('-' for stdin)")
        imp.add_argument("--replace", action="store_true", help="delete rules not in the file")
        imp.add_argument("--check", action="store_true", help="validate only, change nothing")
        sub.add_parser("reference", help="print the language reference (fields, functions...)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verb"] == "reference":
            self.stdout.write(reference_markdown(), ending="")
            return
        if options["verb"] == "export":
            text = export_rules()
            if options["file"]:
                Path(options["file"]).write_text(text, encoding="utf-8")
            else:
                self.stdout.write(text, ending="")
            return
        text = self.read(options["file"])
        try:
            result = import_rules(text, replace=options["replace"], check_only=options["check"])
        except RuleFileError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            raise CommandError(f"nothing imported:\n{problems}", returncode=1) from None
        verb = "would be" if options["check"] else "were"
        changes = {"created": result.created, "updated": result.updated,
                   "deleted": result.deleted, "unchanged": result.unchanged}  # fmt: skip
        for label, names in changes.items():
            if names:
                self.stdout.write(f"{len(names)} {verb} {label}: {', '.join(names)}")

    def read(self, name: str) -> str:
        import sys

        try:
            if name == "-":
                return sys.stdin.read(MAX_FILE_BYTES + 1)
            with open(name, encoding="utf-8") as fh:
                return fh.read(MAX_FILE_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {name}: {exc}", returncode=1) from None
