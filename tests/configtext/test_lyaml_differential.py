"""kongsplit's lyaml dialect against the real lyaml 6.2.8 (Kong's YAML library) under luajit.

Hypothesis draws batches of strings from the classes where YAML dialects disagree (zero-padded
numbers, HH:MM, exponent forms, .inf/.nan, 0x/0o/0b, ~, yes/no/on/off/y/n in every case, ``=``,
``<<``, timestamps, white space at either end, unicode, ``#``, ``: ``, quotes) and random text.
Each batch goes to one luajit process, so thousands of strings take a few seconds.

- the resolver: :func:`configtext.resolve_plain` gives what lyaml's own ``implicit_scalar`` gives,
  failures included, for any string (not only those that can be plain);
- the loader: whatever lyaml writes (strings as sequence items, mapping keys and values),
  :func:`configtext.load` reads as lyaml reads it, and that is the original value;
- raw text: ``k: <string>`` documents read alike (values, and whether it fails at all);
- the writer: :func:`configtext.dump_lyaml` writes lyaml's bytes for sequences of scalars.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lyaml_support import Lyaml, lua_value

from kongsplit.kong import configtext

_WORDS = [
    "yes", "no", "on", "off", "y", "n", "true", "false", "null", "nil", "~", "inf", "nan",
    ".inf", "-.inf", "+.inf", ".nan", "infinity", "=", "<<", "<<<", "-", "?", ":", "#", ",",
    "[]", "{}", "'", '"', "''", "|", ">", "*a", "&a", "!x", "!!str", "%x", "@x", "`x", "- a",
    "a: b", "a:b", "a #b", "#a", "a#b", "x: ", " ", "\t", "", "0", "-0", "+0", "0.", ".0", ".",
    "1_", "01_", "0b1_", "_", "1__0", "0x", "0b", "0o", "0X1F", "0X1E", "0x1p4", "0b1.0",
]  # fmt: skip
_REGEXES = [
    r"[+-]?0[0-9_]{1,6}",  # zero-padded, octal-looking
    r"[+-]?[0-9]{1,3}(:[0-9]{1,2}){1,3}(\.[0-9]{1,3})?",  # HH:MM[:SS][.f], sexagesimal
    r"[+-]?[0-9_]{0,4}\.?[0-9_]{0,4}([eE][+-]?[0-9_]{1,3})?",  # decimal, float, exponent
    r"[+-]?0[xXbBoO]_?[0-9a-fA-F_.]{0,6}([pP][+-]?[0-9]{1,2})?",  # hex, binary, octal forms
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"(Z|[+-][0-9]{2}(:[0-9]{2})?)?)?",  # timestamps
    r"[ \t]*[+-]?(inf|infinity|nan|[0-9]+)[ \t]*",  # what Lua's tonumber skips around
]


def _mixed_case(word: str) -> st.SearchStrategy[str]:
    return st.tuples(*[st.sampled_from(sorted({c.lower(), c.upper()})) for c in word]).map("".join)


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_ATOM = st.one_of(
    st.sampled_from(_WORDS).flatmap(_mixed_case),
    st.sampled_from(_WORDS),
    st.one_of([st.from_regex(r, fullmatch=True) for r in _REGEXES]),
    _TEXT,
)
_SPACE = st.sampled_from(["", "", "", " ", "  ", "\t", "\n", " \n "])
RISKY = st.one_of(
    _ATOM,
    st.tuples(_SPACE, _ATOM, _SPACE).map("".join),
    st.tuples(_ATOM, st.sampled_from([" ", ": ", " #", "\n", ",", "-", "_", "é"]), _ATOM).map(
        "".join
    ),
)
BATCH = st.lists(RISKY, min_size=150, max_size=300)
# No shrinking: a failure already names every string it got wrong, and shrinking a batch through
# luajit would take minutes.
SETTINGS = settings(
    max_examples=16,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _mine(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        return ("ok", lua_value(call(*args, **kwargs)))
    except configtext.KongYAMLError as e:
        # The one deliberate difference: a mapping or sequence as a mapping key (lyaml keys a
        # Lua table by a table; no Python mapping can, and no Kong entity has one) is refused.
        deliberate = "a mapping or sequence as a mapping key" in str(e)
        return ("refused-key",) if deliberate else ("error",)


def _loaded(text: str) -> tuple[Any, ...]:
    """kongsplit's reading of ``text`` as lyaml's (strings cut at a NUL). Its default reading
    keeps a NUL's string whole (see configtext's docstring) and must differ in nothing else."""
    exact = _mine(configtext.load, text, cut_at_nul=True)
    whole = _mine(configtext.load, text)
    assert whole == exact or "\\x00" in repr(whole), (text, whole, exact)
    return exact


@SETTINGS
@given(BATCH)
def test_the_resolver_is_lyamls(lyaml: Lyaml, texts: list[str]) -> None:
    answers = lyaml.implicit(texts)
    wrong = []
    for text, answer in zip(texts, answers, strict=True):
        theirs = ("ok", answer.lua()) if answer.ok else ("error",)
        mine = _mine(configtext.resolve_plain, text)
        if mine != theirs:
            wrong.append(f"{text!r}: lyaml {theirs} ({answer.error}), kongsplit {mine}")
        elif answer.ok and configtext.reads_back_as_string(text) != (theirs[1] == ("str", text)):
            wrong.append(f"{text!r}: reads_back_as_string is wrong")
    assert not wrong, "\n".join(wrong[:20])


@SETTINGS
@given(BATCH)
def test_every_lyaml_export_reads_as_lyaml_reads_it(lyaml: Lyaml, texts: list[str]) -> None:
    # lyaml cannot dump the few strings its resolver fails on (Kong cannot export them either).
    dumpable = [t for t, a in zip(texts, lyaml.implicit(texts), strict=True) if a.ok]
    docs: list[Any] = [
        dumpable,
        {text: n for n, text in enumerate(dumpable)},
        [{"name": text, "tags": [text, text], text: text} for text in dumpable],
    ]
    for doc, dumped in zip(docs, lyaml.dump(docs), strict=True):
        assert dumped.ok, dumped.error
        (read,) = lyaml.load([dumped.value])
        if not read.ok:  # lyaml writes a "<<" key it cannot read back
            assert "<<" in dumped.value, read.error
            assert _mine(configtext.load, dumped.value) == ("error",)
            continue
        assert _loaded(dumped.value) == ("ok", read.lua())
        if not any("\0" in text for text in dumpable):
            assert read.lua() == lua_value(doc)  # and that is the value lyaml was given


@SETTINGS
@given(BATCH)
def test_raw_plain_text_reads_as_lyaml_reads_it(lyaml: Lyaml, texts: list[str]) -> None:
    documents = [f"k: {text}\n" for text in texts] + [f"- {text}\n" for text in texts]
    wrong = []
    for document, answer in zip(documents, lyaml.load(documents), strict=True):
        theirs = ("ok", answer.lua()) if answer.ok else ("error",)
        mine = _loaded(document)
        if mine == ("refused-key",) and answer.ok:
            continue  # the deliberate difference (see _mine), e.g. "- []: _"
        if mine != theirs:
            wrong.append(f"{document!r}: lyaml {theirs} ({answer.error}), kongsplit {mine}")
    assert not wrong, "\n".join(wrong[:20])


SCALARS = st.one_of(
    RISKY,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=10**14, max_value=10**16),  # 15-16 digits: ties at %.14g
    st.floats(),
    st.booleans(),
    st.none(),
)


@SETTINGS
@given(st.lists(SCALARS, min_size=150, max_size=300))
def test_dump_lyaml_writes_lyamls_bytes(lyaml: Lyaml, values: list[Any]) -> None:
    requests: list[Any] = [[value] for value in values] + [values]
    for request, answer in zip(requests, lyaml.dump(requests), strict=True):
        if answer.ok:
            assert configtext.dump_lyaml(request) == answer.value, request
            continue
        try:
            configtext.dump_lyaml(request)
        except configtext.KongYAMLError:
            continue
        raise AssertionError(f"lyaml cannot dump {request!r} ({answer.error}); kongsplit did")


# --- fixed cases hypothesis is unlikely to draw: long numbers, tags, anchors, merges, streams ----

EDGE_TEXTS = [
    "0." + "0" * 20 + "1", "0x0." + "0" * 30 + "1", "1." + "0" * 900 + "1e5", "1e" + "0" * 5000,
    "1e" + "9" * 5000, "1e-" + "0" * 4999 + "1", "0x1p" + "0" * 5000 + "1",
    "9" * 400, "-" + "9" * 400, "0x" + "f" * 300, "-0x" + "f" * 300, "0x" + "e" * 300,
    "0" + "7" * 400, "0b" + "1" * 70, "0b" + "1" * 1100, "1:" + "9" * 400, "1:" * 300 + "1",
    "12345678901234567890", "-12345678901234567891", "0x123456789abcdef0123",
    "0777777777777777777777777", "1e308", "1e309", "-1e309", "4.9e-324", "2e-324", "1e1048575",
    "1e1048576", "1e-1048576", "0x1p1023", "0x1p1024", "0x1.fffffffffffff8p1023", "0x1p-1074",
    "0x1p-1075", "0x1.8p-1074", "0.1e-1000", " 1.5 ", "\v1e1\f", "1.5\r\n", "1e1\x00", "1\x002.5",
]  # fmt: skip


def test_the_resolver_on_edge_texts(lyaml: Lyaml) -> None:
    for text, answer in zip(EDGE_TEXTS, lyaml.implicit(EDGE_TEXTS), strict=True):
        theirs = ("ok", answer.lua()) if answer.ok else ("error",)
        assert _mine(configtext.resolve_plain, text) == theirs, (text[:60], answer.error)


DOCUMENTS = [
    "",
    "# only a comment\n",
    "---\n...\n",
    "~",
    "a: 1\n---\nb: 2\n",
    "a: 1\n---\n[unclosed\n",
    "a: &x {q: 1}\nb: *x\nc: *x\n",
    "a: &x [1, 2]\nb: *x\n",
    "a: &s 0755\nb: *s\n",
    "a: *nowhere\n",
    "a: &x 1\n---\nb: *x\n",
    "a: &x [1]\nb: &x [2]\nc: *x\n",
    "base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\n",
    "base: &b {x: 1, y: 2}\nm: {y: 3, <<: *b}\n",
    "base: &b {x: 1}\nm: {<<: *b, x: 2}\n",
    "a: &a {x: 1}\nb: &b {y: 2}\nm: {<<: [*a, *b], z: 3}\n",
    "m: {<<: [[7, 8]], z: 3}\n",
    "m: {<<: [~], z: 3}\n",
    "m: {<<: [1]}\n",
    "m: {<<: 1}\n",
    "m: {<<: ~}\n",
    "m: {'<<': {a: 1}}\n",
    'm: {"<<": {a: 1}}\n',
    "m: {!!merge x: {a: 1}}\n",
    "m: {!!merge x: 5}\n",
    "m: {<<: {a: 1}, <<: {b: 2}}\n",
    "k: !!str 0755\n",
    "k: !!int '0755'\n",
    "k: !!int 12:30\n",
    "k: !!int 1.5\n",
    "k: !!float 1\n",
    "k: !!float '0x10'\n",
    "k: !!float 1:30\n",
    "k: !!float 1:30.5\n",
    "k: !!float .nan\n",
    "k: !!bool y\n",
    "k: !!bool N\n",
    "k: !!bool 1\n",
    "k: !!null 'anything'\n",
    "k: !!timestamp 2024-01-02\n",
    "k: !!binary aGVsbG8=\n",
    "k: !custom 0755\n",
    "k: !custom '0755'\n",
    "k: ! 0755\n",
    "k: ! '0755'\n",
    "k: !<tag:yaml.org,2002:int> '12'\n",
    "%TAG !e! tag:yaml.org,2002:\n---\nk: !e!int '12'\n",
    "k: !!set {a, b}\n",
    "k: !!omap [a: 1]\n",
    "~: null value key\n",
    "1: one\n01: octal one\n",
    "yes: a\nno: b\n",
    ".nan: x\n",
    "k: 1\nk: 2\n",
    "k: |\n  12:30\n",
    "k: >-\n  0755\n",
    'k: "0755"\n',
    "k: 12:30 # comment\n",
    "k: a\n  b\n",
    "k: 1\n  .5\n",
    "[1, '1', 0x1F, y, n, =, <<, ~, '', 2024-01-02]",
    '{"_format_version": "3.0", "services": [{"port": 08, "n": 1e3, "t": null}]}',
    "\ufeffk: bom\n",
    "- " * 50 + "deep\n",
    "[" * 250 + "]" * 250,
    "{a: " * 250 + "1" + "}" * 250,
]


def test_documents_read_as_lyaml_reads_them(lyaml: Lyaml) -> None:
    for doc, answer in zip(DOCUMENTS, lyaml.load(DOCUMENTS), strict=True):
        theirs = ("ok", answer.lua()) if answer.ok else ("error",)
        assert _loaded(doc) == theirs, (doc, answer.error)


def test_a_table_as_a_key_is_refused(lyaml: Lyaml) -> None:
    """lyaml keys a Lua table by a table; no Python mapping can, and no Kong config does."""
    documents = ["? [1, 2]\n: v\n", "? {a: 1}\n: v\n"]
    for doc, answer in zip(documents, lyaml.load(documents), strict=True):
        assert answer.ok, answer.error
        try:
            configtext.load(doc)
        except configtext.KongYAMLError as e:
            assert "as a mapping key" in str(e)
        else:
            raise AssertionError(f"kongsplit read {doc!r}")


EDGE_NUMBERS = [
    0.0, -0.0, 0.1, -2.5, 1e14, 1e15, 99999999999999.5, 999999999999995.0, 100000000000005,
    497845576068065, 123456789012345, 0.0001, 0.00012345678901234, 9.99999999999995e-5, 1e-5,
    5e-324, 1.7976931348623157e308, 2**53 + 1, 2**63, 2**64 + 5, 10**30, 1.5e300, 1712345678.123,
]  # fmt: skip


def test_numbers_are_written_as_luajit_writes_them(lyaml: Lyaml) -> None:
    """tostring's %.14g, with LuaJIT's own rounding of exact ties (away from zero)."""
    (answer,) = lyaml.dump([EDGE_NUMBERS])
    assert answer.ok, answer.error
    assert configtext.dump_lyaml(EDGE_NUMBERS) == answer.value
