"""Writes that issue: the ?write reference form, and the validation of a kept
certificate (sources/vault/issue.py) before it is reused at start."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from entrypoint.errors import ReferenceSyntaxError
from entrypoint.plan import refs
from entrypoint.plan.keys import SourceKey
from entrypoint.plan.refs import Ref
from entrypoint.sources.vault.issue import cached_answer, role_verdict, validity

WEB = (("common_name", "app.internal"), ("ttl", "72h"))


def test_the_write_form_parses_sorted_and_formats_back() -> None:
    [ref] = refs.parse("vault:pki/issue/web#certificate?write&ttl=72h&common_name=app.internal")
    assert ref == Ref("vault", "pki/issue/web", "certificate", None, WEB)
    assert refs.parse(ref.format()) == [ref]
    assert ref.source_key == SourceKey("vault", "pki/issue/web", None, WEB)
    assert ref.source_key.ref == "vault:pki/issue/web?common_name=…&ttl=…"  # names only
    # Cert and key of one request are one read; another ttl is another request.
    [a, b, c] = refs.references(refs.parse(
        "${vault:pki/issue/web#certificate?write&common_name=x}"
        "${vault:pki/issue/web#private_key?write&common_name=x}"
        "${vault:pki/issue/web#certificate?write&common_name=x&ttl=1h}"))
    assert a.source_key == b.source_key != c.source_key
    [odd] = refs.parse("vault:p#k?write&alt_names=a%26b%7D%25,c&x=")
    assert odd.params == (("alt_names", "a&b}%,c"), ("x", ""))
    assert refs.parse(odd.format()) == [odd]


@pytest.mark.parametrize(("text", "message"), [
    ("vault:pki/issue/web?write&common_name=x#certificate", "come before its key"),
    ("vault:pki/issue/web?common_name=x#certificate", "come before its key"),
    ("vault:p#k?write", "names no parameter"),
    ("vault:p#k?write&a", "is not NAME=VALUE"),
    ("vault:p#k?write&a b=1", "is not NAME=VALUE"),
    ("vault:p#k?write&a=1&a=2", "given twice"),
    ("vault:p#k?write&version=2", "cannot be combined with ?write"),
    ("vault:p#k?write&a=1?version=2", "cannot be combined with ?write"),
    ("consul:k?write&a=1", "only valid on vault:"),
    ("vault:p#k?write&a=%2", "starts no %XX escape"),
    ("vault:p#k?write&a=%ff", "not UTF-8"),
    ("vault:p#k?verzion=2", "unexpected '?'"),  # a typo never becomes a write
])
def test_bad_write_forms_are_refused(text: str, message: str) -> None:
    with pytest.raises(ReferenceSyntaxError, match=".*" + message.replace("?", r"\?")):
        refs.parse(text)


def test_role_verdicts() -> None:
    role = {"allowed_domains": ["app.internal"], "allow_subdomains": True, "max_ttl": 30}
    assert role_verdict(role, {"common_name": "a.app.internal"}) == "allows it"
    assert role_verdict(role, {"common_name": "app.internal"}).startswith("refused: name")
    assert role_verdict({**role, "allow_bare_domains": True},
                        {"common_name": "app.internal", "ttl": "1h"}) == \
        "allows it (ttl 1h capped to the role's max_ttl 30s)"
    assert role_verdict(role, {"common_name": "a.app.internal",
                               "alt_names": "b.app.internal,evil.example"}
                        ).startswith("refused: name evil.example")
    assert role_verdict(role, {}).startswith("refused: no common_name")
    assert role_verdict({"allow_any_name": True}, {"common_name": "x"}) == "allows it"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI")
    folder = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=x",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                   check=True, capture_output=True)
    return (folder / "cert.pem").read_text(), (folder / "key.pem").read_text()


def kept(cert: tuple[str, str], **changes: object) -> bytes:
    not_after = validity(cert[0])[1]
    body: dict[str, object] = {"path": "pki/issue/web", "params": [list(p) for p in WEB],
                               "issued_at": not_after - 86400,
                               "data": {"certificate": cert[0], "private_key": cert[1],
                                        "expiration": int(not_after)}}
    body.update(changes)
    return json.dumps(body).encode()


def test_validity_is_read_from_the_pem(cert: tuple[str, str]) -> None:
    not_before, not_after = validity(cert[0])
    assert 86400 - 5 <= not_after - not_before <= 86400 + 5
    with pytest.raises(ValueError, match="cannot be parsed"):
        validity("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")


def test_a_kept_answer_is_reused_only_when_it_matches(cert: tuple[str, str]) -> None:
    not_before, not_after = validity(cert[0])
    data, until, threshold = cached_answer(kept(cert), "pki/issue/web", WEB, 0.8)
    assert until == not_after and data["private_key"] == cert[1]
    assert threshold == pytest.approx(not_before + 0.8 * (not_after - not_before))
    # The issue time written in the file (the app may write it) moves nothing.
    _, _, late = cached_answer(kept(cert, issued_at=1e12), "pki/issue/web", WEB, 0.8)
    assert late == threshold
    for raw, why in [
        (kept(cert), "another request"),  # other params below
        (kept(cert, path="pki/issue/other"), "another request"),
        (b"{", "not JSON"),
        (kept(cert, data={"certificate": cert[0]}), "no certificate and key"),
        (kept(cert, data={"certificate": cert[0], "private_key": cert[1],
                          "expiration": 12}), "expiration disagrees"),
        (b" " * (2 << 20), "larger than any answer"),
    ]:
        params = (("common_name", "other"),) if why == "another request" and \
            b"other" not in raw else WEB
        with pytest.raises(ValueError, match=why):
            cached_answer(raw, "pki/issue/web", params, 0.8)


def test_nothing_is_kept_or_read_without_the_setting(tmp_path: Path) -> None:
    from entrypoint.sources.vault.issue import Issuer

    assert Issuer("")._cache_file("pki/issue/web", WEB) is None
    one = Issuer(str(tmp_path))._cache_file("pki/issue/web", WEB)
    other = Issuer(str(tmp_path))._cache_file("pki/issue/web", WEB[:1])
    assert one is not None and one.parent == tmp_path and one != other
