"""OpenNebula template syntax (idlevm/one/template.py): parsing, formatting, hostile values.

Besides examples, the tests compare with `oned_parse`, a small model of what oned's own
flex/bison parser (OpenNebula/one src/parsers/template_parser.l, template_syntax.y) makes of a
text: flex's longest match with ties to the earlier rule, its default rule that echoes and
skips an unmatched character, unescape() of `\\"` only, Attribute.h's upper-casing and ONE_
renaming. Whatever our strict parser accepts, and whatever format_template writes, the model
must read identically; that is what makes a round trip through our own parser meaningful.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idlevm.one.template import (
    Attribute,
    TemplateSyntaxError,
    format_template,
    parse_template,
    quote,
)

# ---------------------------------------------------------------- a model of oned's parser

_INITIAL = [  # (token, regex) in the order of template_parser.l; None is skipped
    (None, re.compile(r"[ \t]*#[^\n]*\n")),
    (None, re.compile(r"[ \t\n]+")),
    ("VARIABLE", re.compile(r"[A-Za-z0-9_]+")),
    ("EQUAL", re.compile(r"[ \t]*=[ \t]*")),
    ("EQUAL_EMPTY", re.compile(r"[ \t]*=[ \t]*\n")),
    ("COMMA", re.compile(r"[ \t\n]*,[ \t\n]*")),
    ("CBRACKET", re.compile(r"[ \t\n]*\][ \t\n]*")),
]
_OBRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_CCDATA = re.compile(r"[^\n]*\]\]>[^\n]*")
_STRING = re.compile(r"[^=# \t\n,\[\]]+")


def _quoted_length(text: str, pos: int, old: bool) -> int:
    """Longest match of `"([^"]|\\")*"` at pos (3.x: `+`, at least one character inside)."""
    if text[pos] != '"':
        return 0
    best = 0
    close = text.find('"', pos + 1)
    while close >= 0:
        if not (old and close == pos + 1):
            best = close + 1 - pos
        if text[close - 1] != "\\":  # an unescaped quote: no longer match can pass it
            break
        close = text.find('"', close + 1)
    return best


def _oned_tokens(text: str, old: bool) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, in_value = 0, False
    while pos < len(text):
        kind, length = "", 0
        if in_value:
            candidates = [("OBRACKET", _OBRACKET.match(text, pos))]
            if not old:
                candidates.append(("CCDATA", _CCDATA.match(text, pos)))
            lengths = [(k, m.end() - pos if m else 0) for k, m in candidates]
            lengths.append(("QUOTED", _quoted_length(text, pos, old)))
            lengths.append(("STRING", (m.end() - pos) if (m := _STRING.match(text, pos)) else 0))
        else:
            lengths = [
                (k or "", m.end() - pos if (m := rx.match(text, pos)) else 0) for k, rx in _INITIAL
            ]
        for candidate, n in lengths:
            if n > length:  # strictly longer: ties go to the earlier rule
                kind, length = candidate, n
        if length == 0:  # flex's default rule: ECHO the character, state unchanged
            pos += 1
            continue
        lexeme = text[pos : pos + length]
        pos += length
        if kind == "EQUAL":
            in_value = True
        elif kind in ("OBRACKET", "CCDATA", "QUOTED", "STRING"):
            in_value = False
        if kind == "QUOTED":
            tokens.append(("STRING", lexeme[1:-1]))
        elif kind:
            tokens.append((kind, lexeme))
    return tokens


def _oned_name(name: str) -> str:
    upper = name.upper()
    if not (name[0].isascii() and name[0].isalpha()) or name.startswith("XML"):
        return "ONE_" + upper
    return upper


def oned_parse(text: str, old: bool = False) -> list[Attribute] | None:
    """What oned stores for text (None: it fails). old: the 3.x lexer."""
    text = text.split("\0", 1)[0]  # Template::parse hands flex a C string
    if text.startswith("<"):  # parse_str_or_xml() reads it as XML
        return None
    toks = _oned_tokens(text, old)

    def kind(i: int) -> str:
        return toks[i][0] if i < len(toks) else ""

    def unescape(value: str) -> str:
        return value.replace('\\"', '"')

    attrs: list[Attribute] = []
    i = 0
    while i < len(toks):
        if kind(i) != "VARIABLE":
            return None
        name = _oned_name(toks[i][1])
        if kind(i + 1) == "EQUAL_EMPTY":
            attrs.append((name, ""))
            i += 2
            continue
        if kind(i + 1) != "EQUAL" or kind(i + 2) not in ("STRING", "OBRACKET"):
            return None  # CCDATA too: YYABORT
        if kind(i + 2) == "STRING":
            attrs.append((name, unescape(toks[i + 2][1])))
            i += 3
            continue
        i += 3
        members: dict[str, str] = {}
        while kind(i) != "CBRACKET":
            if members and kind(i) != "COMMA":
                return None
            i += 1 if members else 0
            if (kind(i), kind(i + 1), kind(i + 2)) != ("VARIABLE", "EQUAL", "STRING"):
                return None
            members.setdefault(toks[i][1].upper(), unescape(toks[i + 2][1]))  # map::insert
            i += 3
        attrs.append((name, members))
        i += 1
    return attrs


def test_model_of_oned_reads_naive_backslash_escaping_as_an_injection() -> None:
    # Why quote() refuses a trailing backslash: escaped as \\ (what one would naively do),
    # flex's longest match runs the first value on to the next quote.
    naive = 'A="x\\\\"\nB=" INJECT=evil C="\n'
    assert oned_parse(naive) == [("A", 'x\\"\nB='), ("INJECT", "evil"), ("C", '"')]
    with pytest.raises(TemplateSyntaxError):
        parse_template(naive)
    with pytest.raises(ValueError, match="backslash"):
        quote("x\\")


def test_model_of_oned_known_cases() -> None:
    assert oned_parse('a=1\nb = "x y"\nv=[ c = "1", d=2 ]\ne=\n') == [
        ("A", "1"), ("B", "x y"), ("V", {"C": "1", "D": "2"}), ("E", "")
    ]  # fmt: skip
    assert oned_parse('A=""\n') == [("A", "")]
    assert oned_parse('A=""\n', old=True) == [("A", '""')]  # 3.x: `""` is a bare word
    assert oned_parse('A="x ]]> y"\n') is None
    assert oned_parse("A=1\n# B=2") == [("A", "1"), ("B", "2")]  # comment without newline


# ---------------------------------------------------------------- examples

FACTS_VM = 'VM = [ ID="42", DEPLOY_ID="one-42", MONITOR="SURMRV9TRVE9IjEiCg==" ]\n'
FACTS_IDLE = 'IDLE="1;42:seq=17,ts=1764030000,rcv=1764030002,state=idle;43:seq=3,ts=1,rcv=2"\n'


def test_vm_monitor_vector_from_facts() -> None:
    expected = [("VM", {"ID": "42", "DEPLOY_ID": "one-42", "MONITOR": "SURMRV9TRVE9IjEiCg=="})]
    assert parse_template(FACTS_VM) == expected
    assert oned_parse(FACTS_VM) == expected


def test_classic_idle_attribute_from_facts() -> None:
    value = "1;42:seq=17,ts=1764030000,rcv=1764030002,state=idle;43:seq=3,ts=1,rcv=2"
    assert parse_template(FACTS_IDLE) == [("IDLE", value)]


def test_key_value_lines_quoted_bare_and_spaced() -> None:
    text = 'HYPERVISOR=kvm\nTOTALCPU = 800\nCPUSPEED\t=\t"2400"\nMODELNAME="Xeon E5"\n'
    assert parse_template(text) == [
        ("HYPERVISOR", "kvm"), ("TOTALCPU", "800"), ("CPUSPEED", "2400"),
        ("MODELNAME", "Xeon E5"),
    ]  # fmt: skip


def test_names_are_upper_cased_values_are_not() -> None:
    text = 'idle_seq="Ab"\nvm=[ id=7, Deploy_Id="One-7" ]\n'
    assert parse_template(text) == [("IDLE_SEQ", "Ab"), ("VM", {"ID": "7", "DEPLOY_ID": "One-7"})]


def test_order_and_duplicate_attributes_are_kept() -> None:
    text = "B=1\nA=2\nB=3\nVM=[ID=1]\nVM=[ID=2]\n"
    assert parse_template(text) == [
        ("B", "1"), ("A", "2"), ("B", "3"), ("VM", {"ID": "1"}), ("VM", {"ID": "2"})
    ]  # fmt: skip


def test_empty_values() -> None:
    text = 'A=\nB = \t\nC=""\nD=[]\nE = [ \n ]\nF=[ G="" ]\n'
    expected = [("A", ""), ("B", ""), ("C", ""), ("D", {}), ("E", {}), ("F", {"G": ""})]
    assert parse_template(text) == expected
    assert oned_parse(text) == expected


def test_vector_spans_lines_and_holds_comments() -> None:
    text = 'VM = [\n  ID = 42 , # the id\n  # a whole comment line\n  STATE = "a b"\n]\nX=1\n'
    expected = [("VM", {"ID": "42", "STATE": "a b"}), ("X", "1")]
    assert parse_template(text) == expected
    assert oned_parse(text) == expected


def test_comments_blank_lines_and_several_attributes_per_line() -> None:
    text = '# probe output\n\n  A=1 B="2" # trailing\n\tC=x#glued comment\n'
    assert parse_template(text) == [("A", "1"), ("B", "2"), ("C", "x")]
    assert parse_template("") == [] and parse_template(" \n# only a comment\n") == []


def test_quoted_value_keeps_newlines_brackets_and_non_ascii() -> None:
    value = "line 1\n[x] = y, #not a comment\té ü 中 😀"
    text = f"A={quote(value)}\nB=2\n"
    assert parse_template(text) == [("A", value), ("B", "2")]
    assert oned_parse(text) == [("A", value), ("B", "2")]


def test_only_an_escaped_quote_is_an_escape() -> None:
    # unescape() in template_syntax.y replaces \" and nothing else.
    text = r'A="say \"hi\" \\ \n \t \x"' + "\n"
    expected = [("A", r'say "hi" \\ \n \t \x')]
    assert parse_template(text) == expected
    assert oned_parse(text) == expected


def test_bare_values_keep_backslashes_and_non_ascii() -> None:
    assert parse_template("A=C:\\dir\\\nB=naïve\n") == [("A", "C:\\dir\\"), ("B", "naïve")]


# ---------------------------------------------------------------- errors and positions

ERRORS = [
    ('A="abc', 1, 3, "unterminated quoted value"),
    ('A="abc\\"\n', 1, 3, "unterminated quoted value"),
    ("A=1\nB=[C=1,]\n", 2, 8, "cannot end with a comma"),
    ("A=1\nB=[C=1\n", 2, 3, "unterminated vector"),
    ("B=[C=1 D=2]", 1, 8, "expected ',' or ']'"),
    ("B=[C=1,C=2]", 1, 8, "given twice"),
    ("B=[c=1,C=2]", 1, 8, "given twice"),
    ("B=[C=[D=1]]", 1, 6, "nested"),
    ("B=[C=\n]", 1, 6, 'must be written ""'),
    ('A="x"B=1', 1, 6, "expected a space or a newline"),
    ('A=x"y"', 1, 4, "expected a space or a newline"),
    ("A=[]B=1", 1, 5, "expected a space or a newline"),
    ("A=1\r\nB=2\n", 1, 4, "expected a space or a newline"),
    ("A", 1, 2, "expected '='"),
    ("A\n=1", 1, 2, "expected '='"),
    ("A-B=1", 1, 2, "expected '='"),
    ("1A=2", 1, 1, "ASCII letter"),
    ("_A=2", 1, 1, "ASCII letter"),
    ("né=1", 1, 2, "expected '='"),
    ("xmlA=1", 1, 1, "starts with XML"),
    ("VM=[XMLID=1]", 1, 5, "starts with XML"),
    ("=1", 1, 1, "expected an attribute name"),
    ("A=", 1, 3, "missing value"),
    ("A= #c\n", 1, 4, "expected a value"),
    ("A=,", 1, 3, "expected a value"),
    ("A=1\n  # no newline", 2, 3, "comment must end with a newline"),
    ('A=1\nB="x]]>y"\n', 2, 5, "']]>'"),
    ("A=1 # ]]>\n", 1, 7, "']]>'"),
    ('A="a\x00b"', 1, 5, "not allowed"),
    ('A="a\rb"', 1, 5, "not allowed"),
    ('A="ok"\nB="\x01"', 2, 4, "not allowed"),
    ("A=a\x00b", 1, 4, "expected a space or a newline"),
    ("<TEMPLATE/>", 1, 1, "expected an attribute name"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS)
def test_errors_name_the_line_and_column(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse_template(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in info.value.message
    assert str(info.value) == f"line {line}, column {column}: {info.value.message}"


def test_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^line 1, column 3: unterminated"):
        parse_template('A="')


def test_columns_count_characters_not_bytes() -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse_template('A="éé" B')
    assert (info.value.line, info.value.column) == (1, 9)


# ---------------------------------------------------------------- bounds and linear time


def test_text_longer_than_max_chars_is_refused() -> None:
    text = "A=1\n" * 10
    assert len(parse_template(text, max_chars=len(text))) == 10
    with pytest.raises(TemplateSyntaxError, match="longer than 39 characters") as info:
        parse_template(text, max_chars=39)
    assert (info.value.line, info.value.column) == (10, 4)


def test_more_attributes_than_max_attributes_is_refused() -> None:
    assert len(parse_template("A=1\n" * 5, max_attributes=5)) == 5
    with pytest.raises(TemplateSyntaxError, match="too many attributes") as info:
        parse_template("A=1\n" * 6, max_attributes=5)
    assert info.value.line == 6
    # A vector's members count too: VM plus three members is four.
    with pytest.raises(TemplateSyntaxError, match="too many attributes"):
        parse_template(FACTS_VM, max_attributes=3)
    assert parse_template(FACTS_VM, max_attributes=4)


WORST_CASES = {
    "escaped quotes, unterminated": 'A="' + '\\"' * 500_000,
    "many escaped quotes": 'A="' + '\\"' * 500_000 + '"',
    "open brackets": "A=" + "[" * 1_000_000,
    "long comment without newline": "#" * 1_048_000,
    "long bare value": "A=" + "x" * 1_048_000,
    "many attributes": "A=1\n" * 200_000,
    "wide vector": "V=[" + ",".join(f"K{i}=1" for i in range(150_000)) + "]",
    "many comments": "# c\n" * 260_000,
}


@pytest.mark.parametrize("text", list(WORST_CASES.values()), ids=list(WORST_CASES))
def test_a_megabyte_of_anything_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(TemplateSyntaxError):
        parse_template(text, max_attributes=10**6)
    assert time.perf_counter() - started < 3.0


# ---------------------------------------------------------------- formatting


def test_format_writes_one_attribute_per_line() -> None:
    attrs: list[Attribute] = [
        ("VM", {"ID": "42", "DEPLOY_ID": "one-42"}),
        ("IDLE", '1;a "b"'),
        ("EMPTY", ""),
        ("NONE", {}),
    ]
    text = format_template(attrs)
    assert text == 'VM=[ ID="42", DEPLOY_ID="one-42" ]\nIDLE="1;a \\"b\\""\nEMPTY=\nNONE=[]\n'
    assert parse_template(text) == attrs
    assert oned_parse(text) == attrs and oned_parse(text, old=True) == attrs
    assert format_template([]) == ""


@pytest.mark.parametrize(
    "value", ["x\\", "\x00", "a\rb", "\x1f", "a]]>b", "\ud800", "\ufffe", "\uffff"]
)
def test_quote_refuses_what_opennebula_cannot_carry(value: str) -> None:
    with pytest.raises(ValueError):
        quote(value)
    with pytest.raises(ValueError):
        format_template([("A", "ok"), ("B", value)])
    with pytest.raises(ValueError):
        format_template([("V", {"K": value})])


@pytest.mark.parametrize("name", ["", "1A", "_A", "A-B", "A B", "é", "XMLA", "xml_a", 'A="1"\nB'])
def test_format_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        format_template([(name, "1")])
    with pytest.raises(ValueError):
        format_template([("V", {name: "1"})])


def test_format_refuses_a_member_given_twice_ignoring_case() -> None:
    with pytest.raises(ValueError, match="twice"):
        format_template([("V", {"id": "1", "ID": "2"})])


def test_format_refuses_values_of_other_types() -> None:
    with pytest.raises(TypeError):
        format_template([("A", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        format_template([("V", {"K": 1})])  # type: ignore[dict-item]


# ---------------------------------------------------------------- properties

PIECES = ['"', "\\", '\\"', '\\"\n', "\n", "[", "]", "]]", ">", "=", "#", ",", " ", "\t",
          "é", "😀", "\x00", "\r", "\x7f", "\u2028", "x", "A=1", '\nB="', "]]>", "\ud800",
          "\ufffe"]  # fmt: skip
hostile = st.one_of(st.text(), st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
names = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: not n.startswith("XML")
)


def carriable(value: str) -> bool:
    """Written independently of the module: XML 1.0 characters but CR, no ]]>, no final \\."""
    allowed = all(
        c in "\t\n" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000"
        for c in value
    )
    return allowed and "]]>" not in value and not value.endswith("\\")


@settings(max_examples=600, deadline=None)
@given(hostile)
def test_quote_round_trips_every_value_opennebula_can_carry(value: str) -> None:
    if not carriable(value):
        with pytest.raises(ValueError):
            quote(value)
        return
    text = f"A={quote(value)}\n"
    assert parse_template(text) == [("A", value)]
    assert oned_parse(text) == [("A", value)]


@settings(max_examples=600, deadline=None)
@given(hostile, st.booleans())
def test_a_hostile_value_never_adds_or_changes_another_attribute(
    value: str, in_vector: bool
) -> None:
    middle: Attribute = ("VM", {"ID": "7", "MONITOR": value}) if in_vector else ("HOSTILE", value)
    attrs: list[Attribute] = [("BEFORE", "a"), ("VM", {"ID": "1"}), middle, ("AFTER", "b")]
    if not carriable(value):
        with pytest.raises(ValueError):
            format_template(attrs)
        return
    text = format_template(attrs)
    assert parse_template(text) == attrs
    assert oned_parse(text) == attrs


attribute_lists = st.lists(
    st.tuples(
        names,
        st.one_of(
            hostile.filter(carriable),
            st.dictionaries(names, hostile.filter(carriable), max_size=4),
        ),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(attribute_lists)
def test_formatted_lists_read_back_the_same_here_and_in_oned(attrs: list[Attribute]) -> None:
    text = format_template(attrs)
    assert parse_template(text) == attrs
    assert oned_parse(text) == attrs
    # 3.x reads "" in a vector as two quote characters; everything else the same.
    if not any(isinstance(v, dict) and "" in v.values() for _, v in attrs):
        assert oned_parse(text, old=True) == attrs


# Near-valid text: names, = with spacing, bare/quoted/vector values and separators, mostly
# valid pieces with some wrong ones, so that the parser's accept/refuse edge is exercised.
def _mostly(valid: list[str], wrong: list[str]) -> st.SearchStrategy[str]:
    """A valid piece, or one time in twelve a wrong one."""
    return st.integers(0, 11).flatmap(lambda i: st.sampled_from(wrong if i == 0 else valid))


_inside = st.lists(
    _mostly(["x", " ", "\n", "[", "]", ",", "=", "#", "é", '\\"', "\\"], ['"', "]]>", "\r"]),
    max_size=5,
).map("".join)
_bare = st.lists(_mostly(["x", "1", "é", "\\", ":"], ['"', "[", "=", "\r", "]]>"]), max_size=3)
_name = _mostly(["A", "b", "Id_2"], ["_a", "9", "xmlA", "A-B", ""])
_eq = _mostly(["=", " = ", "\t="], ["=\n", " =\n  ", "", "\n="])
_scalar = st.one_of(_inside.map(lambda s: f'"{s}"'), _bare.map("".join))
_member = st.tuples(_name, _eq, _scalar).map("".join)
_msep = _mostly([",", " , ", ",\n", "\n,", ", # c\n"], [" ", ",,", ""])
_vector = st.tuples(st.lists(_member, max_size=3), _msep).map(
    lambda t: "[ " + t[1].join(t[0]) + " ]"
)
_attr = st.tuples(_name, _eq, st.one_of(_scalar, _vector)).map("".join)
_sep = _mostly(["\n", " ", "\n# c\n", "\t", "\n\n"], ["", "#c", "\r\n"])
near_valid = st.tuples(st.lists(_attr, max_size=5), _sep, _sep).map(
    lambda t: t[1].join(t[0]) + t[2]
)


@settings(max_examples=700, deadline=None)
@given(near_valid)
def test_whatever_we_accept_oned_reads_the_same(text: str) -> None:
    try:
        ours = parse_template(text)
    except TemplateSyntaxError:
        return
    assert oned_parse(text) == ours


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), near_valid, hostile), st.integers(0, 64), st.integers(0, 8))
def test_arbitrary_text_raises_only_template_syntax_error(
    text: str, max_chars: int, max_attributes: int
) -> None:
    for kwargs in ({}, {"max_chars": max_chars, "max_attributes": max_attributes}):
        try:
            result = parse_template(text, **kwargs)
        except TemplateSyntaxError as exc:
            assert exc.line >= 1 and exc.column >= 1
            assert exc.line <= text.count("\n") + 1
        else:
            assert isinstance(result, list)
