"""`manage.py rule_check --expression EXPR [--vm ID]`: is this rule expression valid?

Exit 0 and "valid" (with --vm, also the value for that VM and the fields it read), or exit 1
with the error, and where it is, on stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from idlevm.inventory.models import VirtualMachine
from idlevm.rules.checker import RuleError
from idlevm.rules.compiler import compile_rule
from idlevm.rules.cycle import context
from idlevm.rules.engine import evidence, values_for
from idlevm.rules.fields import is_exempt


class Command(BaseCommand):
    help = "Check a rule expression; with --vm, evaluate it for that VM as the service would."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--expression", "-e", required=True, help="the rule expression")
        parser.add_argument("--vm", type=int, help="OpenNebula id of a VM to evaluate it for")

    def handle(self, *args: Any, **options: Any) -> None:
        ctx = context()
        try:
            compiled = compile_rule(options["expression"], ctx.now)
        except RuleError as exc:
            raise CommandError(f"invalid: {exc}", returncode=1) from None
        self.stdout.write("valid")
        if options["vm"] is None:
            return
        try:
            vm = VirtualMachine.objects.get(id=options["vm"])
        except VirtualMachine.DoesNotExist:
            raise CommandError(f"no VM {options['vm']} in the database", returncode=1) from None
        values = values_for(vm, set(compiled.fields), ctx)
        try:
            value = compiled.evaluate(values)
        except Exception as exc:
            raise CommandError(
                f"evaluation failed for VM {vm.id}: {type(exc).__name__}: {exc}", returncode=1
            ) from None
        verdict = "matches" if value is True else "does not match"
        self.stdout.write(f"VM {vm.id} ({vm.name}): {value!r} ({verdict})")
        for name, shown in evidence(values, compiled).items():
            self.stdout.write(f"  {name} = {shown!r}")
        if vm.gone_at is not None:
            self.stdout.write("  note: this VM is gone from OpenNebula; rules skip it")
        if is_exempt(vm):
            self.stdout.write("  note: the VM is exempt (IDLEVM_EXEMPT): never acted on")
