"""Checked expressions become Python code objects that run without builtins.

The rewrite of the checked tree:
- computes once, here, whatever does not depend on the VM: literal arithmetic, calls of
  pure functions with constant arguments (`hours(4)`, `datetime.timedelta(days=1)`), and,
  since a rule is compiled for one cycle, `now` and what is derived from it
  (`now.hour >= 20`, `now - days(3)`), so evaluation only loads constants;
- gives three-valued logic (SQL's NULL) wherever the checker found a value that may be
  missing (None): a comparison, arithmetic, `not` or method with a missing operand is
  unknown (None), `and`/`or` follow Kleene's tables, and a rule matches a VM only when its
  value is exactly True. Unknown never matches, whatever negations surround it. Guards are
  inline `is None` tests; an operand that is not a plain name is evaluated once, into a
  temporary (`:=`, names starting with _ that no rule can spell);
- binds literal patterns (`re_match`, `glob`) to compiled matchers, and calls the plain
  variant of a function when none of its arguments can be None.

Two code objects come out: `exact` computes the three-valued value (rule_check shows it);
`code` answers only "is it True?" (the verdict, used every cycle): there, `and`/`or` whose
value decides the verdict directly stay Python's own, short-circuiting ones, which agree
with Kleene's on True.

Evaluation: `eval(code, globals, values)` with `__builtins__` empty in globals (functions,
modules, constants) and the VM's field values as locals.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idlevm.rules.checker import Checked, RuleError, check
from idlevm.rules.functions import (
    FUNCTIONS,
    MODULES,
    Function,
    glob_pattern,
    kleene_and,
    kleene_or,
    matcher,
    safe_pattern,
)
from idlevm.rules.types import TUPLE


def _in(a: Any, b: Any) -> bool:
    return a in b


def _not_in(a: Any, b: Any) -> bool:
    return a not in b


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: _in, ast.NotIn: _not_in,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}  # fmt: skip
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip


# --- run-time helpers (reached only through names the checker refuses: leading _) -------------


def _has_none(value: Any) -> bool:
    return value is None or (type(value) is tuple and any(_has_none(v) for v in value))


def _compare_one(op: Callable[[Any, Any], Any], a: Any, b: Any) -> bool | None:
    """One comparison, three-valued; tuples holding None (missing fields) included."""
    if op in (operator.is_, operator.is_not):
        return bool(op(a, b))
    if op in (_in, _not_in) and type(b) is tuple and not _has_none(a):
        if a in tuple(v for v in b if not _has_none(v)):
            return op is _in  # found among the known elements: known
        return None if any(_has_none(v) for v in b) else op is _not_in
    if _has_none(a) or _has_none(b):
        return None
    return bool(op(a, b))


def _compare(ops: tuple[Callable[[Any, Any], Any], ...], *operands: Any) -> bool | None:
    """A chained comparison with three-valued logic: unknown if an operand is None."""
    result: bool | None = True
    for op, a, b in zip(ops, operands, operands[1:], strict=False):
        value = _compare_one(op, a, b)
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
    return kleene_and(values)


def _or(*values: Any) -> bool | None:
    return kleene_or(values)


def _fail(message: str) -> None:
    raise ValueError(message)


# What rewritten code calls (names starting with _: no rule can spell them).
HELPERS: dict[str, object] = {"_compare": _compare, "_and": _and, "_or": _or, "_fail": _fail}
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
    code: Any  # types.CodeType: the verdict
    exact: Any  # types.CodeType: the three-valued value
    globals: dict[str, object]
    fields: frozenset[str]  # per-VM names to put in the values mapping

    def evaluate(self, values: Mapping[str, object]) -> object:
        """The expression's value for one VM: True, False or None (unknown); may raise."""
        return eval(self.exact, self.globals, dict(values))

    def matches(self, values: dict[str, object]) -> bool:
        """Whether the rule matches (its value is exactly True); may raise.

        Temporaries (`_t1`...) are stored in `values`: pass a dict made for the VM.
        """
        return eval(self.code, self.globals, values) is True


def compile_rule(source: str | Checked, now: datetime | None = None) -> CompiledRule:
    """Check (if needed), rewrite and compile; RuleError if anything is wrong.

    Without `now` (validation only) nothing derived from the time is folded.
    """
    checked = check(source) if isinstance(source, str) else source
    constants: dict[str, object] = {}
    rewriter = _Rewriter(checked, constants, now)
    codes = []
    for verdict in (True, False):
        body = rewriter.rewrite(checked.tree.body, verdict)
        tree = ast.fix_missing_locations(ast.Expression(body=body))
        codes.append(compile(tree, "<rule>", "eval"))
    globals_ = {**BASE_GLOBALS, **constants, "now": now}
    return CompiledRule(checked.source, codes[0], codes[1], globals_, frozenset(checked.fields))


def _name(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(helper), args=list(args), keywords=[])


def _is_none(node: ast.expr) -> ast.Compare:
    return ast.Compare(left=node, ops=[ast.Is()], comparators=[ast.Constant(None)])


_NO_VALUE = object()


class _Rewriter:
    """Builds new trees from the checked one (never changes it: it is rewritten twice)."""

    def __init__(self, checked: Checked, constants: dict[str, object], now: datetime | None):
        self.checked = checked
        self.constants = constants
        self.now = now
        self.temps = 0

    # --- constants and types -----------------------------------------------------------------

    def constant(self, value: object) -> ast.expr:
        if value is None or type(value) in (bool, int, float, str):  # not subclasses
            return ast.Constant(value)  # type: ignore[arg-type]
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return _name(name)

    def value(self, node: ast.expr) -> object:
        """The value of a constant node, or _NO_VALUE."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        return _NO_VALUE

    def constants_of(self, *nodes: ast.expr) -> list[object] | None:
        values = [self.value(n) for n in nodes]
        return None if any(v is _NO_VALUE for v in values) else values

    def fold(self, original: ast.AST, compute: Callable[[], object]) -> ast.expr:
        try:
            return self.constant(compute())
        except (ArithmeticError, ValueError, TypeError) as exc:
            what = f"{self.callee(original).name}()" if isinstance(original, ast.Call) else (
                "this arithmetic")  # fmt: skip
            error = RuleError.at(original, self.checked.source, f"{what} fails: {exc}")
            if self.now is None:
                raise error from None  # checking the rule: the literal part is wrong
            # Compiling for a cycle, the rule passed the check: this part fails only at this
            # time (`1 / now.hour` at midnight). Fail where it is reached, as Python would,
            # so `now.hour == 0 or 1 / now.hour > 0` still works.
            return _call("_fail", ast.Constant(str(error)))

    def callee(self, node: ast.Call) -> Function:
        return self.checked.calls[id(node)]

    def maybe_none(self, original: ast.AST, new: ast.expr) -> bool:
        value = self.value(new)
        if value is not _NO_VALUE:
            return value is None
        t = self.checked.types.get(id(original))
        return t is not None and t.nullable

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def unless_none(
        self, pairs: Sequence[tuple[ast.AST, ast.expr]], build: Callable[[list[ast.expr]], ast.expr]
    ) -> ast.expr:
        """`None if <an operand is None> else build(operands)`, each operand evaluated once."""
        tests: list[ast.expr] = []
        uses: list[ast.expr] = []
        for original, new in pairs:
            if not self.maybe_none(original, new):
                uses.append(new)
            elif isinstance(new, ast.Name):
                tests.append(_is_none(_name(new.id)))
                uses.append(_name(new.id))
            else:
                temp = self.temp()
                target = ast.Name(id=temp, ctx=ast.Store())
                tests.append(_is_none(ast.NamedExpr(target=target, value=new)))
                uses.append(_name(temp))
        body = build(uses)
        if not tests:
            return body
        test = tests[0] if len(tests) == 1 else ast.BoolOp(op=ast.Or(), values=tests)
        return ast.IfExp(test=test, body=ast.Constant(None), orelse=body)

    # --- the walk ------------------------------------------------------------------------------

    def rewrite(self, node: ast.expr, verdict: bool = False) -> ast.expr:
        method = getattr(self, f"rw_{type(node).__name__}", None)
        return method(node, verdict) if method else node  # Constant

    def rw_Name(self, node: ast.Name, verdict: bool) -> ast.expr:
        if node.id == "now" and self.now is not None:
            return self.constant(self.now)
        return _name(node.id)

    def rw_Tuple(self, node: ast.Tuple | ast.List, verdict: bool) -> ast.expr:
        return ast.Tuple(elts=[self.rewrite(e) for e in node.elts], ctx=ast.Load())

    rw_List = rw_Tuple

    def rw_Attribute(self, node: ast.Attribute, verdict: bool) -> ast.expr:
        receiver = self.rewrite(node.value)
        values = self.constants_of(receiver)
        if values is not None and values[0] is not None:  # attr is on the checker's allow-list
            return self.fold(node, lambda: getattr(values[0], node.attr))
        return self.unless_none(
            [(node.value, receiver)],
            lambda u: ast.Attribute(value=u[0], attr=node.attr, ctx=ast.Load()),
        )

    def rw_Call(self, node: ast.Call, verdict: bool) -> ast.expr:
        callee = self.callee(node)
        args = [self.rewrite(a) for a in node.args]
        keywords = [ast.keyword(arg=k.arg, value=self.rewrite(k.value)) for k in node.keywords]
        if isinstance(node.func, ast.Attribute) and callee.impl is None:  # a method
            return self.method(node, args)
        if callee.name in ("re_match", "glob"):  # a literal pattern, checked: bind it now
            pattern, text = (args[0], args[1]) if callee.name == "re_match" else (args[1], args[0])
            compile_pattern = safe_pattern if callee.name == "re_match" else glob_pattern
            bound = matcher(compile_pattern(str(self.value(pattern))))
            return ast.Call(func=self.constant(bound), args=[text], keywords=[])
        func: ast.expr
        if isinstance(node.func, ast.Attribute):  # a constructor: datetime.timedelta(...)
            func = ast.Attribute(value=self.rewrite(node.func.value), attr=node.func.attr,
                                 ctx=ast.Load())  # fmt: skip
        else:
            func = _name(node.func.id)  # type: ignore[attr-defined]
        constant_args = self.constants_of(*args, *(k.value for k in keywords))
        if callee.impl is not None and callee.pure and constant_args is not None:
            impl = callee.impl
            named = {k.arg: self.value(k.value) for k in keywords if k.arg}
            return self.fold(node, lambda: impl(*constant_args[: len(args)], **named))
        originals = [*node.args, *(k.value for k in node.keywords)]
        nullable = any(
            self.maybe_none(o, n)
            for o, n in zip(originals, [*args, *(k.value for k in keywords)], strict=True)
        )
        if callee.plain is not None and not nullable:
            func = self.constant(callee.plain)
        return ast.Call(func=func, args=args, keywords=keywords)

    def method(self, node: ast.Call, args: list[ast.expr]) -> ast.expr:
        attribute = node.func
        assert isinstance(attribute, ast.Attribute)
        receiver = self.rewrite(attribute.value)
        values = self.constants_of(receiver, *args)
        if values is not None and values[0] is not None:  # e.g. now.weekday()
            return self.fold(node, lambda: getattr(values[0], attribute.attr)(*values[1:]))
        # A missing receiver or argument makes the result unknown: name.strip(None) would
        # otherwise strip whitespace, name.startswith(None) raise.
        return self.unless_none(
            [(attribute.value, receiver), *zip(node.args, args, strict=True)],
            lambda u: ast.Call(func=ast.Attribute(value=u[0], attr=attribute.attr,
                                                  ctx=ast.Load()), args=u[1:], keywords=[]),
        )  # fmt: skip

    def rw_Compare(self, node: ast.Compare, verdict: bool) -> ast.expr:
        originals = [node.left, *node.comparators]
        operands = [self.rewrite(o) for o in originals]
        functions = [_COMPARE[type(op)] for op in node.ops]
        values = self.constants_of(*operands)
        if values is not None:
            return self.fold(node, lambda: _compare(tuple(functions), *values))
        exact = all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops)
        if exact or not any(
            self.maybe_none(o, n) for o, n in zip(originals, operands, strict=True)
        ):
            return ast.Compare(left=operands[0], ops=node.ops, comparators=operands[1:])
        types = [self.checked.types.get(id(o)) for o in originals]
        tuples = any(t is not None and t.kind == TUPLE for t in types)
        if len(node.ops) > 1 or tuples:  # chains, and tuples that may hold None
            ops = ast.Tuple(elts=[self.constant(f) for f in functions], ctx=ast.Load())
            return _call("_compare", ops, *operands)
        return self.unless_none(
            list(zip(originals, operands, strict=True)),
            lambda u: ast.Compare(left=u[0], ops=node.ops, comparators=[u[1]]),
        )

    def rw_BinOp(self, node: ast.BinOp, verdict: bool) -> ast.expr:
        left, right = self.rewrite(node.left), self.rewrite(node.right)
        values = self.constants_of(left, right)
        if values is not None:
            op = _ARITH[type(node.op)]
            return self.fold(node, lambda: _arith(op, values[0], values[1]))
        return self.unless_none(
            [(node.left, left), (node.right, right)],
            lambda u: ast.BinOp(left=u[0], op=node.op, right=u[1]),
        )

    def rw_UnaryOp(self, node: ast.UnaryOp, verdict: bool) -> ast.expr:
        operand = self.rewrite(node.operand)
        values = self.constants_of(operand)
        if values is not None:
            ops: dict[type[ast.unaryop], Callable[[Any], Any]] = {
                ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
            }  # fmt: skip
            op = ops[type(node.op)]
            return self.fold(node, lambda: _unary(op, values[0]))
        return self.unless_none(
            [(node.operand, operand)], lambda u: ast.UnaryOp(op=node.op, operand=u[0])
        )

    def rw_BoolOp(self, node: ast.BoolOp, verdict: bool) -> ast.expr:
        values = [self.rewrite(v, verdict) for v in node.values]
        # Constant operands (`now.hour >= 20` in a cycle): one that decides the whole (True in
        # `or`, False in `and`) does, as in Kleene's tables; neutral ones drop out.
        decisive = isinstance(node.op, ast.Or)
        known = [self.value(v) for v in values]
        if any(k is decisive for k in known):
            return ast.Constant(decisive)
        kept = [(o, v) for o, v, k in zip(node.values, values, known, strict=True)
                if k is not (not decisive)]  # fmt: skip
        if not kept:
            return ast.Constant(not decisive)
        if len(kept) == 1:  # operands are true/false/None (checked): `x and True` is x
            return kept[0][1]
        node = ast.BoolOp(op=node.op, values=[o for o, _ in kept])
        values = [v for _, v in kept]
        nullable = any(
            self.maybe_none(o, n) for o, n in zip(node.values[:-1], values, strict=False)
        )
        if verdict or not nullable:
            # Python's and/or: exact without missing operands, and, where only "is it True"
            # matters, Python's True agrees with Kleene's.
            return ast.BoolOp(op=node.op, values=values)
        return _call("_and" if isinstance(node.op, ast.And) else "_or", *values)

    def rw_IfExp(self, node: ast.IfExp, verdict: bool) -> ast.expr:
        test = self.rewrite(node.test)
        body, orelse = self.rewrite(node.body, verdict), self.rewrite(node.orelse, verdict)
        known = self.constants_of(test)
        if known is not None and known[0] is not None:
            return body if known[0] else orelse
        return self.unless_none(
            [(node.test, test)], lambda u: ast.IfExp(test=u[0], body=body, orelse=orelse)
        )

    def rw_Subscript(self, node: ast.Subscript, verdict: bool) -> ast.expr:
        """A missing string, index or slice bound is unknown (a None bound would mean "to
        the end", silently)."""
        index = node.slice
        bounds = [index.lower, index.upper, index.step] if isinstance(index, ast.Slice) else [index]
        present = [b for b in bounds if b is not None]
        pairs = [(o, self.rewrite(o)) for o in [node.value, *present]]

        def build(uses: list[ast.expr]) -> ast.expr:
            given = iter(uses[1:])
            parts = [None if b is None else next(given) for b in bounds]
            new_index: ast.expr | None = (
                ast.Slice(lower=parts[0], upper=parts[1], step=parts[2])
                if isinstance(index, ast.Slice) else parts[0]
            )  # fmt: skip
            assert new_index is not None
            return ast.Subscript(value=uses[0], slice=new_index, ctx=ast.Load())

        return self.unless_none(pairs, build)
