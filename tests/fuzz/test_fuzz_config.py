"""Fuzz: the kav4mailservers.conf lexer, validator and editor (runtime/config).

Properties: the lexer keeps every byte (parse -> text is the identity, so an untouched file is
never changed); the validator raises nothing but ConfigError, whose every message names the file;
the editor leaves a file byte-identical when nothing (or the same value) is set, and an edit
changes only the lines of the key being set.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from runtime.config import ConfigError, loads_config, parse_assignment, schema
from runtime.config.editor import apply_assignments, normalise
from runtime.config.lexer import Document
from tests.support.fuzz import nasty_text

_SECTIONS = [s.name for s in schema.SECTIONS if not s.pattern] + [
    "smtpscan.group:default", "smtpscan.group:x", "smtpscanner.group:y", "smtpscan.notify.admin.infected",
    "smtpscan.notify.bogus.x", "nosuch", "",
]
_KEYS = sorted({k.name for s in schema.SECTIONS for k in s.keys} | {"EHL0supportDSN", "LicenseDomain", "bogus"})
_VALUES = ["yes", "no", "0", "-1", "10", "0755", "/tmp", "relative", "smtp:127.0.0.1:10026", "lmtp:[::1]:24",
           "inet:127.0.0.1:10025", "local:/var/run/x", "remove", "cured", "unchanged", ".*", "[", "(a|b",
           "a@b", "%Y", "%", "exec rm -rf /; x", "\"quoted\"", "", "a,b,,c", "NAME ADDR", "1e400", "nan"]


def _case(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.lower(), word.upper()])


_value = st.one_of(st.sampled_from(_VALUES), nasty_text.map(lambda s: s.replace("\n", " ").replace("\r", " ")))
_line = st.one_of(
    st.sampled_from(_SECTIONS).flatmap(_case).map(lambda s: f"[{s}]"),
    st.tuples(st.sampled_from(_KEYS).flatmap(_case), st.sampled_from(["=", " = ", "= ", "=\""]), _value).map(
        lambda t: "".join(t)),
    st.sampled_from(["", "# comment", "; comment", "   ", "\t", "junk line", "=novalue", "Key=a \\", "\\"]),
    nasty_text.map(lambda s: s.replace("\n", "").replace("\r", "")),
)
_eol = st.sampled_from(["\n", "\r\n", "\r", ""])
config_text = st.lists(st.tuples(_line, _eol), max_size=30).map(lambda xs: "".join(a + b for a, b in xs))
any_text = st.one_of(config_text, nasty_text, st.text(max_size=300))


def _load(text: str):  # noqa: ANN202
    try:
        return loads_config(text, filename="fuzz.conf")
    except ConfigError as exc:
        assert exc.messages, "a ConfigError must say what is wrong"
        for m in exc.messages:
            assert str(m).startswith("fuzz.conf:"), str(m)
            assert "\n" not in str(m) and "\r" not in str(m), f"one line per message: {str(m)!r}"
        return None


@given(any_text)
@example("[path]\nBasesPath=\\\n")
@example("[smtpscan.group:x]\nRecipients=[\n")
def test_lexer_round_trip_is_identity(text: str) -> None:
    assert Document.parse(text).text() == text


@given(any_text)
@example("[smtpscan.group:x]\nRecipients=(a\n")
@example("[smtpscan.limits]\nMaxCheckTime=1e400\n")
@example("[locale]\nInfected=\u2028x\n")
def test_validator_raises_only_config_error(text: str) -> None:
    cfg = _load(text)
    if cfg is not None:
        cfg.effective()  # every group's resolved matrix too
        for g in cfg.groups:
            g.matches("a@b", "c@d")


@given(config_text)
@example("[scanner.object]\nOnCorrupted=exec rm -rf /; x\nOnCorrupted=exec rm -rf /; x\n")  # found: repeated scalar
@example("[smtpscan.limits]\nMaxScanners=2\nMaxScanners=3\n")
def test_editor_without_change_is_identity(text: str) -> None:
    assert apply_assignments(text, []) == text
    cfg = _load(text)
    if cfg is None:
        return
    # Setting every key that is present to the value it already has changes nothing.
    assignments = []
    for section, settings in cfg.sections.items():
        for key, setting in settings.items():
            try:
                assignments.append(normalise(section, key, setting.raw))
            except ConfigError:
                continue
    assert apply_assignments(text, assignments) == text


@given(config_text, st.sampled_from(["smtpscan.limits.MaxScanners", "smtpscan.general.Protocol",
                                     "path.TempPath", "smtpscan.group:x.RecipientAction",
                                     "smtpscan.group:default.InfectedQuarantine"]),
       st.sampled_from(["1", "smtp", "/var/tmp", "cured", "yes"]))
# Found by this target: a last line ending in a continuation backslash swallowed the section header
# (or key) the editor appended after it, so the edit silently changed the other key's value.
@example("Key=a \\\r", "smtpscan.limits.MaxScanners", "1")
# found by a later long run: two trailing backslashes continued again over the editor's blank line
@example("Key=a \\\\\n", "smtpscan.limits.MaxScanners", "1")
@example("[smtpscan.limits]\nMaxCheckTime=5 \\", "smtpscan.limits.MaxScanners", "1")
def test_editor_touches_only_the_key_set(text: str, dotted: str, value: str) -> None:
    try:
        a = parse_assignment(f"{dotted}={value}")
    except ConfigError:
        return
    new = apply_assignments(text, [a])

    def others(doc: Document) -> list[tuple[str, str | None, str, str]]:
        """Every logical entry but blanks, the key being set and a header the edit had to add."""
        out = []
        for e in doc.entries:
            canon = schema.canonical_section(e.section)[0] if e.section is not None else None
            if e.kind == "blank" or (e.kind == "key" and canon == a.section and e.name.lower() == a.key.lower()):
                continue
            out.append((e.kind, e.section, e.name, e.value))
        return out

    before, after = others(Document.parse(text)), others(Document.parse(new))
    added = ("section", a.section, a.section, "")
    if added in after and added not in before:
        after.remove(added)
    assert after == before


@given(nasty_text)
@example("a.b")
@example("smtpscan.limits.MaxScanners=\u0663")
def test_parse_assignment_raises_only_config_error(text: str) -> None:
    try:
        parse_assignment(text)
    except ConfigError:
        pass
