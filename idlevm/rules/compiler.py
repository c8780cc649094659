"""Checked expressions become Python code objects that run without builtins.

The rewrite does three things to the checked tree:
- constant calls of pure functions (`hours(4)`, `datetime.timedelta(days=1)`) are computed
  once, here, so evaluation only loads them;
- wherever the checker found a value that may be missing (None), operators get
  three-valued logic (as SQL's NULL): a comparison, arithmetic or `not` with a missing
  operand is unknown (None), `and`/`or` follow Kleene's tables, and a rule matches a VM only
  when its value is exactly True. Unknown never matches, whatever negations surround it.
  The common case, a field name as operand, compiles to inline `is None` tests; other
  operands go through small helpers.
- list literals become tuples.

Evaluation: `eval(code, globals, values)` with `__builtins__` empty in globals (functions,
modules, constants, `now`) and the VM's field values as locals.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idlevm.rules.checker import Checked, RuleError, check
from idlevm.rules.functions import FUNCTIONS, MODULES, Function

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}  # fmt: skip
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip


# --- run-time helpers (reached only through names the checker refuses: leading _) -------------


def _compare(ops: tuple[Callable[[Any, Any], Any], ...], *operands: Any) -> bool | None:
    """A chained comparison with three-valued logic: unknown if an operand is None."""
    result: bool | None = True
    for op, a, b in zip(ops, operands, operands[1:], strict=False):
        if op in (operator.is_, operator.is_not):
            value = op(a, b)
        elif a is None or b is None:
            value = None
        else:
            value = bool(op(a, b))
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _arith(op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    return None if a is None or b is None else op(a, b)


def _unary(op: Callable[[Any], Any], a: Any) -> Any:
    return None if a is None else op(a)


def _and(*values: Any) -> bool | None:
    """Kleene's AND: false if any operand is false, else unknown if any is unknown."""
    result: bool | None = True
    for v in values:
        if v is None:
            result = None
        elif not v:
            return False
    return result


def _or(*values: Any) -> bool | None:
    """Kleene's OR: true if any operand is true, else unknown if any is unknown."""
    result: bool | None = False
    for v in values:
        if v is None:
            result = None
        elif v:
            return True
    return result


def _if(test: Any, body: Any, orelse: Any) -> Any:
    return None if test is None else (body if test else orelse)


HELPERS: dict[str, object] = {
    "_compare": _compare, "_arith": _arith, "_unary": _unary, "_and": _and, "_or": _or,
    "_if": _if, "_not": operator.not_, "_neg": operator.neg, "_pos": operator.pos,
}  # fmt: skip
BASE_GLOBALS: dict[str, object] = {
    "__builtins__": {},
    **HELPERS,
    **{name: fn.impl for name, fn in FUNCTIONS.items() if fn.impl is not None},
    **{name: module for name, (_, module) in MODULES.items()},
}


@dataclass
class CompiledRule:
    """A checked expression ready to evaluate, for one cycle (`now` is bound)."""

    source: str
    code: Any  # types.CodeType
    globals: dict[str, object]
    fields: frozenset[str]  # per-VM names to put in the values mapping

    def evaluate(self, values: Mapping[str, object]) -> object:
        """The expression's value for one VM; may raise (arithmetic, overflow...)."""
        return eval(self.code, self.globals, values)

    def matches(self, values: Mapping[str, object]) -> bool:
        return self.evaluate(values) is True


def compile_rule(source: str | Checked, now: datetime | None = None) -> CompiledRule:
    """Check (if needed), rewrite and compile; RuleError if anything is wrong."""
    checked = check(source) if isinstance(source, str) else source
    constants: dict[str, object] = {}
    tree = _Rewriter(checked, constants).visit(checked.tree)
    ast.fix_missing_locations(tree)
    code = compile(tree, "<rule>", "eval")
    globals_ = {**BASE_GLOBALS, **constants, "now": now}
    return CompiledRule(checked.source, code, globals_, frozenset(checked.fields))


def _name(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(helper), args=list(args), keywords=[])


def _is_none(node: ast.expr) -> ast.Compare:
    return ast.Compare(left=node, ops=[ast.Is()], comparators=[ast.Constant(None)])


def _unless_none(names: Sequence[ast.expr], body: ast.expr) -> ast.expr:
    """`None if a is None or b is None else body` for simple operands."""
    tests: list[ast.expr] = [_is_none(_copy(n)) for n in names]
    test = tests[0] if len(tests) == 1 else ast.BoolOp(op=ast.Or(), values=tests)
    return ast.IfExp(test=test, body=ast.Constant(None), orelse=body)


def _copy(node: ast.expr) -> ast.expr:
    return _name(node.id) if isinstance(node, ast.Name) else node


def _simple(node: ast.expr) -> bool:
    return isinstance(node, ast.Name | ast.Constant)


class _Rewriter(ast.NodeTransformer):
    def __init__(self, checked: Checked, constants: dict[str, object]) -> None:
        self.checked = checked
        self.constants = constants

    def visit(self, node: ast.AST) -> Any:
        new = super().visit(node)
        types = self.checked.types
        if new is not node and id(node) in types:  # a replacement keeps the checked type
            types[id(new)] = types[id(node)]
        return new

    def nullable(self, node: ast.AST) -> bool:
        t = self.checked.types.get(id(node))
        return t is not None and t.nullable

    def constant(self, value: object) -> ast.expr:
        if value is None or isinstance(value, bool | int | float | str):
            return ast.Constant(value)
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return _name(name)

    def is_constant(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) or (
            isinstance(node, ast.Name) and node.id in self.constants
        )

    def value_of(self, node: ast.expr) -> object:
        return node.value if isinstance(node, ast.Constant) else self.constants[node.id]  # type: ignore[attr-defined]

    def visit_List(self, node: ast.List) -> ast.expr:
        elements = [self.visit(e) for e in node.elts]
        return ast.Tuple(elts=elements, ctx=ast.Load())

    def visit_Call(self, node: ast.Call) -> ast.expr:
        callee = self.checked.calls[id(node)]
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        node.args = [self.visit(a) for a in node.args]
        for keyword in node.keywords:
            keyword.value = self.visit(keyword.value)
        folded = self.fold(node, callee)
        if folded is not None:
            return folded
        if receiver is not None and self.nullable(receiver):  # a method of a missing value
            return _unless_none([receiver], node)
        return node

    def fold(self, node: ast.Call, callee: Function) -> ast.expr | None:
        impl = callee.impl
        if impl is None or not callee.pure:
            return None
        if not all(self.is_constant(a) for a in node.args):
            return None
        if not all(self.is_constant(k.value) for k in node.keywords):
            return None
        args = [self.value_of(a) for a in node.args]
        kwargs = {k.arg: self.value_of(k.value) for k in node.keywords if k.arg}
        try:
            value = impl(*args, **kwargs)
        except (ArithmeticError, ValueError, TypeError) as exc:
            # Line 1 of the rule is line 2 of the parsed text (checker.check).
            line, col = getattr(node, "lineno", 2) - 1, getattr(node, "col_offset", 0) + 1
            raise RuleError(f"{callee.name}() fails: {exc}", line, col) from None
        return self.constant(value)

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        if self.nullable(node.value):
            return _unless_none([node.value], node)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        if not self.nullable(node) and not any(
            self.nullable(c) for c in [node.left, *node.comparators]
        ):
            return node
        operands = [node.left, *node.comparators]
        if all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
            return node  # explicit tests for None are exact
        if len(node.ops) == 1 and all(_simple(o) for o in operands):
            risky = [o for o in operands if isinstance(o, ast.Name) and self.nullable(o)]
            return _unless_none(risky, node) if risky else node
        ops = [self.constant(_COMPARE[type(op)]) for op in node.ops]
        return _call("_compare", ast.Tuple(elts=ops, ctx=ast.Load()), *operands)

    def numbers(self, *nodes: ast.expr) -> bool:
        return all(
            isinstance(n, ast.Constant) and type(n.value) in (int, float, bool) for n in nodes
        )

    def folded(self, node: ast.expr, compute: Callable[[], Any]) -> ast.expr:
        """Arithmetic on literal numbers, done once here (`-5`, `2 ** 8`, `1 / 0` fails)."""
        try:
            return ast.Constant(compute())
        except (ArithmeticError, ValueError) as exc:
            line, col = getattr(node, "lineno", 2) - 1, getattr(node, "col_offset", 0) + 1
            raise RuleError(f"this arithmetic fails: {exc}", line, col) from None

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        left, right = node.left, node.right
        if self.numbers(left, right):
            op = _ARITH[type(node.op)]
            return self.folded(node, lambda: op(left.value, right.value))  # type: ignore[attr-defined]
        if not self.nullable(node):
            return node
        return _call("_arith", self.constant(_ARITH[type(node.op)]), node.left, node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        operand = node.operand
        if isinstance(node.op, ast.USub | ast.UAdd) and self.numbers(operand):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return self.folded(node, lambda: sign * operand.value)  # type: ignore[attr-defined]
        if not self.nullable(node):
            return node
        if isinstance(node.operand, ast.Name):
            return _unless_none([node.operand], node)
        helper = {ast.Not: "_not", ast.USub: "_neg", ast.UAdd: "_pos"}[type(node.op)]
        return _call("_unary", _name(helper), node.operand)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        self.generic_visit(node)
        if not any(self.nullable(v) for v in node.values[:-1]):
            return node  # Python's own and/or are exact when only the last may be None
        return _call("_and" if isinstance(node.op, ast.And) else "_or", *node.values)

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        if not self.nullable(node.test):
            return node
        if isinstance(node.test, ast.Name):
            return _unless_none([node.test], node)
        return _call("_if", node.test, node.body, node.orelse)
