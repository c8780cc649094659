"""Validation of rule expressions: parse, allow-list every node, type-check.

A rule is a Python expression, but only the parts listed here: the node kinds in
`Checker.visit_*`, the names in fields.FIELDS / functions.MODULES / `now`, the callables
and attributes in functions.py. Anything else is refused with what is wrong and where
(line, column). Limits on length, size, nesting, constants and exponents keep any valid
expression cheap to evaluate.
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from dataclasses import dataclass, field

from idlevm.one.states import LCM_BY_NAME, VM_BY_NAME
from idlevm.rules.fields import FIELDS, NOW
from idlevm.rules.functions import (
    ATTRIBUTES,
    CONSTRUCTORS,
    FUNCTIONS,
    MAX_PATTERN,
    MODULES,
    Function,
    SignatureError,
    safe_pattern,
)
from idlevm.rules.types import (
    BOOL,
    CLASS_DATE,
    CLASS_DATETIME,
    CLASS_TIMEDELTA,
    DATE,
    DATETIME,
    DURATION,
    FLOAT,
    INT,
    MODULE_DATETIME,
    MODULE_TIME,
    NONE,
    STR,
    TUPLE,
    Type,
    comparable,
    number_kind,
    unify,
)

MAX_LENGTH = 2000  # characters of source
MAX_NODES = 400
MAX_DEPTH = 30
MAX_INT = 10**18
MAX_STR = 1000  # characters of a string constant
MAX_ELEMENTS = 100  # of a tuple or list literal
MAX_EXPONENT = 8

NAMES: dict[str, Type] = {
    **{name: f.type for name, f in FIELDS.items()},
    NOW.name: NOW.type,
    **{name: t for name, (t, _) in MODULES.items()},
}
STATE_NAMES = {"state": set(VM_BY_NAME), "lcm_state": set(LCM_BY_NAME)}


class RuleError(ValueError):
    """An invalid expression: a message for operators, and where (1-based line, column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    @classmethod
    def at(cls, node: ast.AST, source: str, message: str) -> RuleError:
        """The error at a node of the tree check() parsed (the rule starts on its line 2)."""
        lines = source.split("\n")
        line = min(max(getattr(node, "lineno", 2) - 1, 1), len(lines))
        offset = getattr(node, "col_offset", 0) if getattr(node, "lineno", 2) > 1 else 0
        # ast offsets count UTF-8 bytes; operators count characters.
        column = len(lines[line - 1].encode()[:offset].decode(errors="ignore")) + 1
        return cls(message, line, column)

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass
class Checked:
    """A valid expression: its tree, the type of every node, what it reads and calls."""

    source: str
    tree: ast.Expression
    types: dict[int, Type] = field(default_factory=dict)  # id(node) -> type
    calls: dict[int, Function] = field(default_factory=dict)  # id(Call node) -> callee
    fields: set[str] = field(default_factory=set)  # per-VM names read (user_attr included)


def check(source: str) -> Checked:
    """Validate an expression; raises RuleError."""
    if not isinstance(source, str):
        raise RuleError("the expression must be text")
    if not source.strip():
        raise RuleError("the expression is empty")
    if len(source) > MAX_LENGTH:
        raise RuleError(f"the expression is longer than {MAX_LENGTH} characters")
    _check_brackets(source)
    try:
        # In parentheses, an expression may span lines as operators write it in a form.
        tree = ast.parse(f"(\n{source}\n)", mode="eval")
    except SyntaxError as exc:
        line = None if exc.lineno is None else min(max(exc.lineno - 1, 1), source.count("\n") + 1)
        raise RuleError(f"syntax error: {exc.msg}", line, exc.offset) from None
    except (RecursionError, MemoryError):
        raise RuleError(f"the expression nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. a NUL character
        raise RuleError(f"cannot parse the expression: {exc}") from None
    _check_size(tree)
    checked = Checked(source, tree)
    result = Checker(checked, source).visit(tree.body)
    if result.kind not in (BOOL, NONE):
        raise RuleError(
            f"a rule must be true or false, this expression is {result.describe()}", 1, 1
        )
    return checked


def _check_brackets(source: str) -> None:
    """Brackets must pair up within the rule itself: a closing bracket with none open would
    close check()'s own wrapper (`idle) or (idle` is not an expression an operator meant),
    and an unclosed one would be reported at the wrapper's, not where the operator left it."""
    opened: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.OP and token.string in "([{":
                opened.append(token)
            elif token.type == tokenize.OP and token.string in ")]}":
                if not opened:
                    line, column = token.start
                    raise RuleError(f"syntax error: unmatched {token.string!r}", line, column + 1)
                opened.pop()
    except tokenize.TokenError:
        if opened:  # end of input inside brackets
            line, column = opened[-1].start
            raise RuleError(
                f"syntax error: {opened[-1].string!r} was never closed", line, column + 1
            ) from None
    except SyntaxError:
        return  # bad tokens: the parser says it better


def _check_size(tree: ast.AST) -> None:
    """Bound size and depth first (iteratively): the checker then recurses safely."""
    stack, nodes = [(tree, 0)], 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise RuleError(f"the expression has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise RuleError(f"the expression nests deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _suggest(word: str, choices: object) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)  # type: ignore[call-overload]
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    """Computes the type of each node, refusing anything not explicitly allowed."""

    def __init__(self, checked: Checked, source: str) -> None:
        self.checked = checked
        self.source = source

    def error(self, node: ast.AST, message: str) -> RuleError:
        return RuleError.at(node, self.source, message)

    def visit(self, node: ast.AST, receiver: bool = False) -> Type:
        """The node's type; a module or class only as the receiver of an attribute or call."""
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.error(node, f"{_node_name(node)} is not allowed in a rule")
        result: Type = method(node)
        if result.kind in _NOT_VALUES and not receiver:
            what = ast.unparse(node)[:40]
            raise self.error(node, f"{what} is not a value: use its members, e.g. "
                             f"{_NOT_VALUES[result.kind]}")  # fmt: skip
        self.checked.types[id(node)] = result
        return result

    # --- leaves ----------------------------------------------------------------------------

    def visit_Constant(self, node: ast.Constant) -> Type:
        value = node.value
        if value is None:
            return Type(NONE, True)
        if isinstance(value, bool):
            return Type(BOOL)
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.error(node, f"numbers are limited to {MAX_INT:.0e} in size")
            return Type(INT)
        if isinstance(value, float):
            return Type(FLOAT)
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise self.error(node, f"strings are limited to {MAX_STR} characters")
            return Type(STR)
        raise self.error(node, f"{type(value).__name__} constants are not allowed in a rule")

    def visit_Name(self, node: ast.Name) -> Type:
        name = node.id
        if name.startswith("_"):
            raise self.error(node, f"names starting with _ are not allowed: {name!r}")
        if name in FUNCTIONS:
            raise self.error(node, f"{name} is a function: call it, e.g. {name}(...)")
        if name not in NAMES:
            raise self.error(node, f"unknown name {name!r}{_suggest(name, NAMES)}")
        if name in FIELDS:
            self.checked.fields.add(name)
        return NAMES[name]

    # --- attributes and calls --------------------------------------------------------------

    def member(self, node: ast.Attribute) -> tuple[Type, Type | Function]:
        """(receiver type, what the attribute is) for `x.attr`."""
        if node.attr.startswith("_"):
            raise self.error(node, f"attributes starting with _ are not allowed: {node.attr!r}")
        receiver = self.visit(node.value, receiver=True)
        allowed = ATTRIBUTES.get(receiver.kind, {})
        if node.attr not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise self.error(
                node,
                f"{receiver.describe()} has no attribute {node.attr!r} here "
                f"(allowed: {names}){_suggest(node.attr, allowed)}",
            )
        return receiver, allowed[node.attr]

    def visit_Attribute(self, node: ast.Attribute) -> Type:
        receiver, member = self.member(node)
        if isinstance(member, Function):
            if member.name in ("time.time",):
                raise self.error(node, f"{member.name} is a function: call it")
            raise self.error(node, f"{node.attr} is a method: call it, e.g. .{node.attr}()")
        return Type(member.kind, receiver.nullable)

    def visit_Call(self, node: ast.Call) -> Type:
        receiver = Type(NONE)  # not nullable: plain functions have no receiver
        if isinstance(node.func, ast.Name) and node.func.id.startswith("_"):
            raise self.error(node, f"names starting with _ are not allowed: {node.func.id!r}")
        if isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            callee = FUNCTIONS[node.func.id]
            if callee.impl is None:  # bound per VM
                self.checked.fields.add(node.func.id)
        elif isinstance(node.func, ast.Attribute):
            receiver, member = self.member(node.func)
            if isinstance(member, Function):
                callee = member
            elif member.kind in CONSTRUCTORS:
                callee = CONSTRUCTORS[member.kind]
            else:
                raise self.error(node, f"{ast.unparse(node.func)} cannot be called")
        else:
            what = ast.unparse(node.func)[:40]
            raise self.error(node, f"{what} cannot be called{_suggest(what, FUNCTIONS)}")
        self.checked.calls[id(node)] = callee
        args = self.arguments(node, callee)
        try:
            result = callee.returns(args)
        except SignatureError as exc:
            raise self.error(node, f"{callee.name}: {exc}") from None
        return Type(result.kind, result.nullable or receiver.nullable)

    def arguments(self, node: ast.Call, callee: Function) -> list[Type]:
        name = callee.name
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(node, "*arguments are not allowed")
        count, limit = len(node.args), len(callee.params)
        if count < callee.required or (count > limit and not callee.variadic):
            wanted = (
                f"{callee.required}" if callee.required == limit else f"{callee.required}-{limit}"
            )
            if callee.variadic:
                wanted = f"at least {callee.required}"
            raise self.error(node, f"{name}() takes {wanted} argument(s), {count} given")
        types = []
        for position, arg in enumerate(node.args):
            kinds = callee.params[min(position, limit - 1)]
            types.append(self.argument(arg, kinds, f"{name}() argument {position + 1}"))
            if position in callee.constant_args:
                self.pattern(arg, name)
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg not in callee.keywords:
                what = "**arguments" if keyword.arg is None else f"keyword {keyword.arg!r}"
                allowed = ", ".join(callee.keywords) or "none"
                raise self.error(keyword, f"{name}() does not take {what} (allowed: {allowed})")
            types.append(self.argument(keyword.value, callee.params[0], f"{name}() {keyword.arg}"))
        return types

    def argument(self, arg: ast.expr, kinds: frozenset[str], what: str) -> Type:
        t = self.visit(arg)
        if t.kind != NONE and t.kind not in kinds:
            raise self.error(arg, f"{what} cannot be {t.describe()}")
        return t

    def pattern(self, arg: ast.expr, name: str) -> None:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise self.error(arg, f"the pattern of {name}() must be a literal string")
        if len(arg.value) > MAX_PATTERN:
            raise self.error(arg, f"patterns are limited to {MAX_PATTERN} characters")
        if name == "re_match":
            try:
                safe_pattern(arg.value)
            except SignatureError as exc:
                raise self.error(arg, str(exc)) from None

    # --- operators -------------------------------------------------------------------------

    def visit_BoolOp(self, node: ast.BoolOp) -> Type:
        types = [self.visit(v) for v in node.values]
        for value, t in zip(node.values, types, strict=True):
            if t.kind not in (BOOL, NONE):
                word = "and" if isinstance(node.op, ast.And) else "or"
                raise self.error(value, f"'{word}' joins true/false values, not {t.describe()}")
        return Type(BOOL, any(t.nullable for t in types))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Type:
        t = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            if t.kind not in (BOOL, NONE):
                raise self.error(node, f"'not' needs true/false, not {t.describe()}")
            return Type(BOOL, t.nullable)
        if isinstance(node.op, ast.USub | ast.UAdd) and (t.numeric or t.kind == DURATION):
            return Type(INT if t.kind == BOOL else t.kind, t.nullable)
        if isinstance(node.op, ast.Invert):
            raise self.error(node, "the bitwise operator ~ is not allowed in a rule")
        raise self.error(node, f"this operator does not apply to {t.describe()}")

    def visit_BinOp(self, node: ast.BinOp) -> Type:
        left, right = self.visit(node.left), self.visit(node.right)
        op = type(node.op).__name__
        if isinstance(node.op, ast.Pow):
            self.exponent(node)
        kind = _arithmetic(op, left, right)
        if kind is None:
            hint = ""
            if op == "Mult" and {left.kind, right.kind} & {STR, TUPLE}:
                hint = ": repetition of strings and tuples is not allowed"
            elif op == "Mod" and left.kind == STR:
                hint = ": string formatting is not allowed"
            elif {left.kind, right.kind} == {DURATION, INT} or {left.kind, right.kind} == {
                DURATION,
                FLOAT,
            }:
                hint = ": write a duration as hours(4), minutes(30) or days(1)"
            raise self.error(
                node, f"cannot apply {_OPS.get(op, op)} to {left.describe()} and "
                f"{right.describe()}{hint}",
            )  # fmt: skip
        return Type(kind, left.nullable or right.nullable)

    def exponent(self, node: ast.BinOp) -> None:
        exp = node.right
        if isinstance(exp, ast.UnaryOp) and isinstance(exp.op, ast.USub):
            exp = exp.operand
        # Whole numbers only: a fractional power of a negative number is complex.
        literal = isinstance(exp, ast.Constant) and type(exp.value) is int
        if not literal or abs(exp.value) > MAX_EXPONENT:  # type: ignore[attr-defined]
            raise self.error(
                node,
                f"exponents must be literal numbers up to {MAX_EXPONENT}, whole (a fractional "
                "power of a negative number is complex)",
            )
        if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.left)):
            raise self.error(node, "nested powers are not allowed")

    def visit_Compare(self, node: ast.Compare) -> Type:
        operands = [node.left, *node.comparators]
        types = [self.visit(o) for o in operands]
        for i, op in enumerate(node.ops):
            self.comparison(node, op, operands[i], operands[i + 1], types[i], types[i + 1])
        if all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
            return Type(BOOL)
        return Type(BOOL, any(t.nullable for t in types))

    def comparison(self, node: ast.Compare, op: ast.cmpop, a: ast.expr, b: ast.expr,
                   ta: Type, tb: Type) -> None:  # fmt: skip
        if isinstance(op, ast.Is | ast.IsNot):
            if not any(isinstance(x, ast.Constant) and x.value is None for x in (a, b)):
                raise self.error(node, "'is' only tests for None (missing data): use ==")
            return
        if isinstance(op, ast.In | ast.NotIn):
            if tb.kind == STR and ta.kind not in (STR, NONE):
                raise self.error(node, f"'in' a string needs a string, not {ta.describe()}")
            if tb.kind not in (STR, TUPLE, NONE):
                raise self.error(node, f"'in' needs a tuple or a string, not {tb.describe()}")
            self.state_names(a, b)
            return
        if isinstance(op, ast.Eq | ast.NotEq):
            if unify([ta, tb]) is None and not comparable(ta, tb):
                raise self.error(
                    node, f"compares {ta.describe()} with {tb.describe()}: never equal"
                )
            self.state_names(a, b)
            self.state_names(b, a)
            return
        if not comparable(ta, tb):
            hint = ""
            if {ta.kind, tb.kind} & {DURATION} and (ta.numeric or tb.numeric):
                hint = ": write a duration as hours(4), minutes(30) or days(1)"
            raise self.error(node, f"cannot order {ta.describe()} and {tb.describe()}{hint}")

    def state_names(self, a: ast.expr, b: ast.expr) -> None:
        """`state == "ACTIV"` is a typo that would never match: refuse unknown names."""
        if not (isinstance(a, ast.Name) and a.id in STATE_NAMES):
            return
        values = b.elts if isinstance(b, ast.Tuple | ast.List) else [b]
        for value in values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                known = STATE_NAMES[a.id]
                if value.value not in known:
                    raise self.error(
                        value,
                        f"{value.value!r} is not an OpenNebula {a.id.replace('_', ' ')} name"
                        f"{_suggest(value.value, known)}",
                    )

    def visit_IfExp(self, node: ast.IfExp) -> Type:
        test = self.visit(node.test)
        if test.kind not in (BOOL, NONE):
            raise self.error(node.test, f"the condition must be true/false, not {test.describe()}")
        body, orelse = self.visit(node.body), self.visit(node.orelse)
        common = unify([body, orelse])
        if common is None:
            raise self.error(node, f"the branches differ: {body.describe()}, {orelse.describe()}")
        return Type(common.kind, common.nullable or test.nullable)

    def visit_Tuple(self, node: ast.Tuple | ast.List) -> Type:
        if len(node.elts) > MAX_ELEMENTS:
            raise self.error(node, f"tuples are limited to {MAX_ELEMENTS} elements")
        nullable = False
        for element in node.elts:
            if isinstance(element, ast.Starred):
                raise self.error(element, "*unpacking is not allowed")
            nullable |= self.visit(element).nullable
        # "nullable" for a tuple: an element may be None (the tuple itself never is).
        return Type(TUPLE, nullable)

    visit_List = visit_Tuple

    def visit_Subscript(self, node: ast.Subscript) -> Type:
        t = self.visit(node.value)
        if t.kind != STR:
            raise self.error(node, f"only strings can be indexed or sliced, not {t.describe()}")
        index = node.slice
        parts = [index.lower, index.upper, index.step] if isinstance(index, ast.Slice) else [index]
        nullable = t.nullable
        for part in parts:
            if part is None:
                continue
            bound = self.visit(part)
            if bound.kind not in (INT, BOOL, NONE):
                raise self.error(part, "string indexes must be whole numbers")
            nullable |= bound.nullable or bound.kind == NONE
        return Type(STR, nullable)


# Modules and classes are reached through, never used as values themselves.
_NOT_VALUES = {
    MODULE_DATETIME: "datetime.timedelta(hours=1)", MODULE_TIME: "time.time()",
    CLASS_TIMEDELTA: "datetime.timedelta(hours=1)", CLASS_DATETIME: "datetime.datetime(2027, 1, 1)",
    CLASS_DATE: "datetime.date(2027, 1, 1)",
}  # fmt: skip
_OPS = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/", "FloorDiv": "//", "Mod": "%",
        "Pow": "**"}  # fmt: skip

# (operator, left kind, right kind) -> result kind, beyond number-with-number.
_MIXED = {
    ("Add", DURATION, DURATION): DURATION, ("Sub", DURATION, DURATION): DURATION,
    ("Add", DATETIME, DURATION): DATETIME, ("Add", DURATION, DATETIME): DATETIME,
    ("Sub", DATETIME, DURATION): DATETIME, ("Sub", DATETIME, DATETIME): DURATION,
    ("Add", DATE, DURATION): DATE, ("Sub", DATE, DURATION): DATE, ("Sub", DATE, DATE): DURATION,
    ("Div", DURATION, DURATION): FLOAT, ("FloorDiv", DURATION, DURATION): INT,
    ("Mod", DURATION, DURATION): DURATION, ("Add", STR, STR): STR, ("Add", TUPLE, TUPLE): TUPLE,
}  # fmt: skip


def _arithmetic(op: str, left: Type, right: Type) -> str | None:
    """The kind of `left op right`, or None when it is not allowed."""
    if NONE in (left.kind, right.kind):
        return NONE
    if left.numeric and right.numeric:
        if op == "Div":
            return FLOAT
        return number_kind(left, right) if op in _OPS else None
    if op in ("Mult", "Div", "FloorDiv") and left.kind == DURATION and right.numeric:
        return DURATION
    if op == "Mult" and right.kind == DURATION and left.numeric:
        return DURATION
    return _MIXED.get((op, left.kind, right.kind))


def _node_name(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda", "NamedExpr": "assignment (:=)", "JoinedStr": "an f-string",
        "FormattedValue": "an f-string", "ListComp": "a comprehension", "SetComp":
        "a comprehension", "DictComp": "a comprehension", "GeneratorExp": "a generator",
        "Dict": "a dict", "Set": "a set", "Await": "await", "Yield": "yield",
        "YieldFrom": "yield", "Starred": "*unpacking", "Slice": "a slice",
    }  # fmt: skip
    kind = type(node).__name__
    return names.get(kind, f"'{kind}'")
