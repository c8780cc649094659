"""OpenNebula's template syntax: the `KEY="value"` text monitoring probes print and oned parses.

Followed: OpenNebula/one src/parsers/template_parser.l and template_syntax.y (master; the 3.x
copies in src/template/ differ only where noted), include/Attribute.h, src/template/Template.cc.

The parser is strict: it accepts only text that oned reads the same way *and* whose values oned
can hand back unchanged in its XML replies. Anything else raises TemplateSyntaxError, so a test
that formats hostile content and parses it back cannot pass while the real oned would misread
it. The rules, and why:

- Attribute: `NAME = value`; spaces and tabs around `=` are optional, a newline there is refused
  (oned skips it; stricter is harmless). Attributes are separated by whitespace or comments.
- Names: ASCII letter, then letters, digits, `_` (lexer: `[[:alnum:]_]+`; Attribute.h renames a
  name not starting with a letter or starting with XML to ONE_..., so those are refused).
  Returned upper-cased, as oned stores them (Attribute's constructor; toupper() in vectors).
- Values: quoted `"..."`, bare (no whitespace, control characters or `=#,[]"`), or empty as
  `NAME=` followed by a newline (the lexer's EQUAL_EMPTY; at the end of text oned fails).
- Quoted values: the only escape is `\\"` for `"` (unescape() in template_syntax.y); any other
  backslash is literal, so `\\\\` is two backslashes. The value ends at the first `"` not
  preceded by a backslash: flex takes the longest match, so oned would read `\\"` as an escaped
  quote and run on to a later one. Hence a value ending in a backslash cannot be written
  (quote() refuses it), and an unterminated quote is an error. Newlines, `[]=,#` and
  non-ASCII are fine inside quotes. Modern oned reads `""` as empty; 3.x lexed it as the
  two-character value `""`, so format_template writes an empty single value as `NAME=`.
- Vectors: `NAME = [ A = "x", B = y ]`, may span lines, may hold comments, may be empty (`[]`);
  no trailing comma and no nesting (grammar: array_val). A member's empty value must be `""`
  (EQUAL_EMPTY is not allowed in array_val). A member given twice is an error (oned silently
  keeps the first).
- Comments: `#` outside quotes to the end of the line; the line must end with a newline (the
  lexer rule is `[[:blank:]]*#.*\\n`: without it oned lexes the comment text as attributes).
- Refused anywhere: `]]>` (oned aborts on it: values go into XML CDATA sections), NUL (oned
  scans a C string, so the rest would vanish), characters XML 1.0 does not allow, and CR
  (XML parsers turn CR LF into LF, so the value would not come back unchanged).

Errors carry 1-based line and column; the column counts characters, not bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = ["Attribute", "TemplateSyntaxError", "format_template", "parse_template", "quote"]

Attribute: TypeAlias = tuple[str, str | dict[str, str]]

_NAME_TOKEN = re.compile(r"[A-Za-z0-9_]+")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BLANKS = re.compile(r"[ \t]*")
_GAP = re.compile(r"[ \t\n]*")
_BARE = re.compile(r'[^\x00-\x20\x7f-\x9f\s=#,\[\]"\ud800-\udfff\ufffe\uffff]+')
# Characters XML 1.0 allows, minus CR (see the module docstring).
_BAD_CHAR = re.compile(r"[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_AFTER_VALUE = " \t\n#"  # what may follow a top-level value (or the end of the text)


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where a run of pattern (which may be empty) starting at pos ends."""
    match = pattern.match(text, pos)
    return match.end() if match else pos


class TemplateSyntaxError(ValueError):
    """Text that is not (strictly) OpenNebula template syntax; line and column are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message, line, column)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def _name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return f"name {name[:40]!r} must be an ASCII letter then letters, digits or '_'"
    if name[:3].upper() == "XML":
        return f"name {name[:40]!r} starts with XML, which OpenNebula renames"
    return None


def _value_problem(value: str) -> str | None:
    bad = _BAD_CHAR.search(value)
    if bad:
        return f"character {bad.group()!r} cannot be carried by OpenNebula"
    if "]]>" in value:
        return "']]>' cannot be carried by OpenNebula (it ends the XML CDATA section)"
    return None


class _Parser:
    """One pass over the text with anchored regexes and str.find: linear, no recursion."""

    def __init__(self, text: str, max_attributes: int) -> None:
        self.text = text
        self.pos = 0
        self.left = max_attributes

    def error(self, message: str, pos: int | None = None) -> TemplateSyntaxError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return TemplateSyntaxError(message, line, column)

    def found(self) -> str:
        char = self.text[self.pos : self.pos + 1]
        return f"found {char!r}" if char else "found the end of the text"

    def check(self, start: int, end: int) -> None:
        """Refuse characters oned cannot carry in text[start:end] (a quoted value, a comment)."""
        bad = _BAD_CHAR.search(self.text, start, end)
        cdata = self.text.find("]]>", start, end)
        if bad and (cdata < 0 or bad.start() < cdata):
            raise self.error(f"character {bad.group()!r} is not allowed", bad.start())
        if cdata >= 0:
            raise self.error("']]>' is not allowed (OpenNebula aborts on it)", cdata)

    def skip_gap(self) -> None:
        """Whitespace, newlines and comments."""
        text = self.text
        while True:
            self.pos = _skip(_GAP, text, self.pos)
            if not text.startswith("#", self.pos):
                return
            end = text.find("\n", self.pos)
            if end < 0:
                raise self.error("a comment must end with a newline")
            self.check(self.pos, end)
            self.pos = end + 1

    def name(self) -> str:
        start = self.pos
        match = _NAME_TOKEN.match(self.text, start)
        if match is None:
            raise self.error(f"expected an attribute name, {self.found()}")
        problem = _name_problem(match.group())
        if problem:
            raise self.error(problem, start)
        if self.left <= 0:
            raise self.error("too many attributes", start)
        self.left -= 1
        self.pos = match.end()
        return match.group().upper()

    def equals(self) -> None:
        self.pos = _skip(_BLANKS, self.text, self.pos)
        if not self.text.startswith("=", self.pos):
            raise self.error(f"expected '=' after the name, {self.found()}")
        self.pos = _skip(_BLANKS, self.text, self.pos + 1)

    def quoted(self) -> str:
        text, start = self.text, self.pos
        search = start + 1
        while True:
            close = text.find('"', search)
            if close < 0:
                raise self.error("unterminated quoted value", start)
            if text[close - 1] != "\\":  # for `""`, close - 1 is the opening quote
                break
            search = close + 1
        self.check(start + 1, close)
        self.pos = close + 1
        return text[start + 1 : close].replace('\\"', '"')

    def value(self, in_vector: bool) -> str:
        char = self.text[self.pos : self.pos + 1]
        if char == '"':
            return self.quoted()
        match = _BARE.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return match.group()
        if char == "[":
            raise self.error("vectors cannot be nested")
        if char == "\n" and in_vector:
            raise self.error('an empty value inside a vector must be written ""')
        raise self.error(f"expected a value, {self.found()}")

    def vector(self) -> dict[str, str]:
        text, opened = self.text, self.pos
        self.pos += 1
        members: dict[str, str] = {}
        self.skip_gap()
        if text.startswith("]", self.pos):
            self.pos += 1
            return members
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated vector", opened)
            start = self.pos
            name = self.name()
            if name in members:
                raise self.error(f"{name} given twice in one vector", start)
            self.equals()
            members[name] = self.value(in_vector=True)
            self.skip_gap()
            char = text[self.pos : self.pos + 1]
            if char == "]":
                self.pos += 1
                return members
            if char == ",":
                self.pos += 1
                self.skip_gap()
                if text.startswith("]", self.pos):
                    raise self.error("a vector cannot end with a comma")
            elif not char:
                raise self.error("unterminated vector", opened)
            else:
                raise self.error(f"expected ',' or ']' in a vector, {self.found()}")

    def template(self) -> list[Attribute]:
        attrs: list[Attribute] = []
        text = self.text
        while True:
            self.skip_gap()
            if self.pos >= len(text):
                return attrs
            name = self.name()
            self.equals()
            char = text[self.pos : self.pos + 1]
            value: str | dict[str, str]
            if char == "\n":
                value = ""  # EQUAL_EMPTY; the newline stays as the separator
            elif char == "[":
                value = self.vector()
            elif not char:
                raise self.error('missing value (write NAME="" or end the line after =)')
            else:
                value = self.value(in_vector=False)
            attrs.append((name, value))
            if self.pos < len(text) and text[self.pos] not in _AFTER_VALUE:
                raise self.error(f"expected a space or a newline after the value, {self.found()}")


def parse_template(
    text: str, max_chars: int = 1_048_576, max_attributes: int = 10_000
) -> list[Attribute]:
    """The attributes in text, in order, duplicates kept; names upper-cased, vectors as dicts.

    max_attributes counts every name, a vector's members included. Raises TemplateSyntaxError
    (and nothing else) for any str that is not strictly valid or is over a bound.
    """
    if not isinstance(text, str):
        raise TypeError(f"template text must be str, not {type(text).__name__}")
    parser = _Parser(text, max_attributes)
    if len(text) > max_chars:
        raise parser.error(f"template longer than {max_chars} characters", max_chars)
    return parser.template()


def quote(value: str) -> str:
    """value as a quoted template value; ValueError if OpenNebula cannot carry it unchanged."""
    problem = _value_problem(value)
    if problem is None and value.endswith("\\"):
        # Before the closing quote a backslash would make oned read `\"` (longest match).
        problem = "a value ending in a backslash cannot be quoted for OpenNebula"
    if problem:
        raise ValueError(problem)
    return '"' + value.replace('"', '\\"') + '"'


def format_template(attrs: Iterable[Attribute]) -> str:
    """One attribute per line; parse_template() gives attrs back (names upper-cased).

    Raises ValueError for a bad name, a value quote() refuses, or a vector member name given
    twice (ignoring case); TypeError for a value that is neither str nor a mapping of str.
    """
    lines: list[str] = []
    for name, value in attrs:
        problem = _name_problem(name)
        if problem:
            raise ValueError(problem)
        if isinstance(value, str):
            lines.append(f"{name}={quote(value)}" if value else f"{name}=")
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"{name}: value must be str or a mapping, not {type(value).__name__}")
        members: list[str] = []
        seen: set[str] = set()
        for sub, sub_value in value.items():
            problem = _name_problem(sub) if isinstance(sub, str) else "names must be str"
            if problem:
                raise ValueError(f"{name}: {problem}")
            if sub.upper() in seen:
                raise ValueError(f"{name}: {sub} given twice")
            seen.add(sub.upper())
            if not isinstance(sub_value, str):
                raise TypeError(f"{name}/{sub}: value must be str")
            members.append(f"{sub}={quote(sub_value)}")
        lines.append(f"{name}=[ {', '.join(members)} ]" if members else f"{name}=[]")
    return "".join(line + "\n" for line in lines)
