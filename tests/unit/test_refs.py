"""The reference parser: forms, escapes, errors, and properties over any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.errors import ReferenceSyntaxError
from entrypoint.plan import refs
from entrypoint.plan.refs import Ref


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("vault:kv/app/db#password", [Ref("vault", "kv/app/db", "password")]),
        ("vault:kv/app/db#password?version=3", [Ref("vault", "kv/app/db", "password", 3)]),
        ("vault:database/creds/app#username", [Ref("vault", "database/creds/app", "username")]),
        ("consul:config/app/feature_x", [Ref("consul", "config/app/feature_x")]),
        ("file:/run/secrets/db.json#password", [Ref("file", "/run/secrets/db.json", "password")]),
        ("file:/run/secrets/token", [Ref("file", "/run/secrets/token")]),
        (
            "postgresql://${vault:database/creds/app#username}:"
            "${vault:database/creds/app#password}@db/app",
            ["postgresql://", Ref("vault", "database/creds/app", "username"), ":",
             Ref("vault", "database/creds/app", "password"), "@db/app"],
        ),
        ("\\vault:not-a-reference", ["vault:not-a-reference"]),
        ("\\\\vault:x", ["\\vault:x"]),
        ("cost: $${vault:x#y} only", ["cost: ${vault:x#y} only"]),
        ("plain value with $$ and ${HOME}", ["plain value with $$ and ${HOME}"]),
        ("vaults:are-not-refs", ["vaults:are-not-refs"]),
        ("", []),
    ],
)
def test_forms(value: str, expected: list[refs.Part]) -> None:
    assert refs.parse(value) == expected
    assert refs.parse(refs.format(expected)) == expected


def test_two_halves_of_one_credential_share_a_source_key() -> None:
    parts = refs.parse("${vault:database/creds/app#username}:${vault:database/creds/app#password}")
    keys = {r.source_key for r in refs.references(parts)}
    assert keys == {("vault", "database/creds/app", None, ())}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("vault:kv/app/db", "names no key"),
        ("vault:#key", "has no path"),
        ("vault:kv/app/db#", "empty key"),
        ("vault:kv/app/db#k?verzion=2", "unexpected '?'"),
        ("vault:kv/app/db#k?version=0", "version of 1 or more"),
        ("consul:a/b#k", "take no #KEY"),
        ("file:/x?version=2", "only valid on vault"),
        ("x=${vault:kv/app/db#password", "no closing"),
    ],
)
def test_errors_name_the_variable_and_what_was_expected(value: str, message: str) -> None:
    with pytest.raises(ReferenceSyntaxError) as info:
        refs.parse(value, where="variable DB_PASSWORD")
    assert message in str(info.value)
    assert "variable DB_PASSWORD" in str(info.value)
    assert info.value.exit_code == 78


reference_text = st.text(alphabet=st.characters(blacklist_characters="#?}\x00"), min_size=1)
refs_strategy = st.one_of(
    st.builds(Ref, st.just("vault"), reference_text.filter(lambda p: p.strip("/") == p),
              st.text(alphabet=st.characters(blacklist_characters="?}\x00"), min_size=1),
              st.one_of(st.none(), st.integers(min_value=1, max_value=10**6))),
    st.builds(Ref, st.just("consul"), reference_text.filter(lambda p: p.strip("/") == p)),
)
literal = st.lists(st.sampled_from([*"ab$\\{}:#?/ ", "vault:", "${", "file:", "$$"]),
                   max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_input_parses_or_raises_the_documented_error(value: str) -> None:
    try:
        parts = refs.parse(value)
    except ReferenceSyntaxError:
        return
    # Whatever parsed formats back to a value that parses the same.
    assert refs.parse(refs.format(parts)) == parts


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(literal, refs_strategy), max_size=5))
def test_format_then_parse_round_trips(parts: list[refs.Part]) -> None:
    normal = _normalise(parts)
    assert refs.parse(refs.format(normal)) == normal


@settings(max_examples=300, deadline=None)
@given(st.text().filter(lambda v: "${" not in v and not v.startswith(("vault:", "consul:",
                                                                        "file:", "\\"))))
def test_values_that_are_not_references_pass_through_unchanged(value: str) -> None:
    assert refs.format(refs.parse(value)) == value
    assert "".join(p for p in refs.parse(value) if isinstance(p, str)) == value


def _normalise(parts: list[refs.Part]) -> list[refs.Part]:
    out: list[refs.Part] = []
    for part in parts:
        if isinstance(part, str):
            if not part:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += part
                continue
        out.append(part)
    return out
