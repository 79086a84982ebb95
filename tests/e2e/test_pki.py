"""Certificates issued by Vault's PKI engine (a write with parameters), against the real
Vault: renewed by their NotAfter with one SIGHUP each and the key always matching the
certificate, the env reference form, reuse of a still-valid certificate across a restart
(0 issue calls in Vault's audit log), and ``check`` validating the role without issuing."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entrypoint.sources.vault.issue import validity
from tests.helpers.cli import run_cli, wait_until
from tests.helpers.vault_rotation import APP_PROBE, Running, start

ISSUE = "pki/issue/web"
FAST = ["--wait-min", "100ms", "--wait-max", "500ms"]
BEGIN = "-----BEGIN CERTIFICATE-----"


def pki(vault: Any, max_ttl: str) -> str:
    """A PKI mount with a root CA and a role ``web`` for app.internal and its subdomains;
    a token that may issue from it and read the role."""
    vault.enable_secrets("pki")
    vault.api("POST", "sys/mounts/pki/tune", {"max_lease_ttl": "87600h"})
    vault.api("POST", "pki/root/generate/internal", {"common_name": "Test Root",
                                                      "ttl": "87600h"})
    vault.api("POST", "pki/roles/web", {"allowed_domains": ["app.internal"],
                                        "allow_subdomains": True, "allow_bare_domains": True,
                                        "max_ttl": max_ttl})
    vault.set_policy("pki-app", {ISSUE: ["update"], "pki/roles/web": ["read"]})
    return str(vault.create_token(["pki-app"], ttl=3600))


def pubkey(pem: str, kind: str) -> str:
    """The public key of a certificate (``x509``) or a private key (``pkey``), as PEM."""
    args = ["openssl", kind, "-noout", "-pubkey"] if kind == "x509" else \
        ["openssl", "pkey", "-pubout"]
    return subprocess.run(args, input=pem.encode(), capture_output=True, check=True
                          ).stdout.decode()


def split(bundle: str) -> tuple[str, str]:
    """(certificate, private key) of a bundle written as cert, then key."""
    cert, _, key = bundle.partition("-----END CERTIFICATE-----")
    return cert + "-----END CERTIFICATE-----\n", key.strip() + "\n"


def write_config(tmp_path: Path, common_name: str = "app.internal",
                 ttl: str = "30s") -> Path:
    call = f'secret("{ISSUE}", common_name="{common_name}", ttl="{ttl}")'
    tls = tmp_path / "tls"
    config = tmp_path / "app.toml"
    config.write_text("".join(
        f'[[template]]\ncontents = {json.dumps("{% set c = " + call + " %}" + body)}\n'
        f'destination = "{tls / name}"\non_change = "signal:HUP"\n\n'
        for name, body in [("cert.pem", "{{ c.certificate }}\n"),
                           ("key.pem", "{{ c.private_key }}\n"),
                           ("chain.pem", "{{ c.ca_chain }}\n"),
                           ("bundle.pem", "{{ c.certificate }}\n{{ c.private_key }}\n")]))
    return config


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


@needs_openssl
def test_a_certificate_is_renewed_by_its_not_after_with_one_hup_and_a_matching_key(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    vault = vault_server
    token = pki(vault, "30s")
    config = write_config(tmp_path)
    bundle = tmp_path / "tls" / "bundle.pem"
    ep = start(tmp_path, {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token,
                          "ENTRYPOINT_CONFIG": str(config)},
               [*FAST, "--replace-fraction", "0.5"],
               [sys.executable, APP_PROBE, "{journal}", "--file", str(bundle)])
    procs.append(ep)
    wait_until(lambda: len(ep.events("hup")) >= 2 or ep.proc.poll() is not None,
               timeout=60, what="two renewals")
    hups = ep.events("hup")
    issued = vault.count(ISSUE)
    assert ep.stop() == 0, ep.log
    [first] = ep.events("start")
    assert len(hups) >= 2, ep.log
    # One issue per generation: four files, one answer; one HUP per renewal.
    assert issued in (len(hups) + 1, len(hups) + 2), (issued, len(hups))
    seen: list[tuple[float, float]] = []
    for event in [first, *hups]:
        cert, key = split(event["file"])
        assert pubkey(cert, "x509") == pubkey(key, "pkey"), "a new cert with an old key"
        seen.append(validity(cert))
    assert len({s for s in seen}) == len(seen), "a HUP without a new certificate"
    for (nb, na), (next_nb, _) in itertools.pairwise(seen):
        # Replaced at ~0.5 (jittered 5 %) of its 30 s; NotBefore is backdated 30 s.
        elapsed = (next_nb + 30) - (nb + 30)
        assert 0.4 * 30 <= elapsed <= 0.5 * 30 + 5, (elapsed, seen)
        assert next_nb + 30 < na, "renewed only after the certificate had expired"
    tls = tmp_path / "tls"
    cert, key = (tls / "cert.pem").read_text(), (tls / "key.pem").read_text()
    assert pubkey(cert, "x509") == pubkey(key, "pkey")
    assert BEGIN in (tls / "chain.pem").read_text()
    assert len(ep.lines(f"vault: issued a certificate at {ISSUE}")) == issued, ep.log
    ep.assert_no_secret_logged(key.strip())


def test_the_env_form_and_a_restart_reuse_the_cached_certificate(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    vault = vault_server
    token = pki(vault, "2h")
    cache = tmp_path / "cache"
    config = write_config(tmp_path, ttl="1h")
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token, "ENTRYPOINT_CONFIG": str(config),
           "ENTRYPOINT_ISSUE_CACHE_DIR": str(cache),
           "TLS_CERT": f"vault:{ISSUE}#certificate?write&common_name=app.internal&ttl=1h"}
    app = [sys.executable, APP_PROBE, "{journal}", "TLS_CERT"]

    def run(name: str, *args: str) -> tuple[Running, str]:
        ep = start(tmp_path, env, [*FAST, *args], app, name=name)
        procs.append(ep)
        wait_until(lambda: ep.events("start") or ep.proc.poll() is not None, timeout=30,
                   what="the app's start")
        assert ep.stop() == 0, ep.log
        [event] = ep.events("start")
        cert = str(event["env"]["TLS_CERT"])
        assert cert.startswith(BEGIN)
        assert (tmp_path / "tls" / "cert.pem").read_text() == cert + "\n"
        return ep, cert

    # The env reference and the templates name the same (path, params): one issue.
    ep, first = run("first")
    assert vault.count(ISSUE) == 1, ep.log
    [kept] = list(cache.iterdir())
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # A restart while the certificate is still valid: 0 issue calls, the same certificate.
    ep, again = run("second")
    assert vault.count(ISSUE) == 1 and again == first, ep.log
    assert ep.lines("reusing the certificate of pki/issue/web"), ep.log
    # Past the replace threshold: replace_fraction 0.001 of its life counted from its
    # NotBefore (Vault backdates it 30 s; an issue time before it is clamped to it): 3.6 s
    # after NotBefore is long gone. Issued again.
    body = json.loads(kept.read_text())
    body["issued_at"] = 0
    kept.write_text(json.dumps(body))
    ep, third = run("third", "--replace-fraction", "0.001")
    assert vault.count(ISSUE) == 2 and third != first, ep.log
    assert ep.lines("is not reused: it is past 0.001 of its life"), ep.log
    # A cache whose request does not match (tampered): issued again, never trusted.
    body = json.loads(kept.read_text())
    body["params"][0][1] = "other.internal"
    kept.write_text(json.dumps(body))
    ep, fourth = run("fourth")
    assert vault.count(ISSUE) == 3 and fourth not in (first, third), ep.log
    assert ep.lines("is not reused: it was issued for another request"), ep.log
    # A link planted in place of the cache is not followed, and is replaced.
    target = tmp_path / "elsewhere.json"
    target.write_text(kept.read_text())
    kept.unlink()
    os.symlink(target, kept)
    os.chmod(cache, 0o777)
    ep, _ = run("fifth")
    assert vault.count(ISSUE) == 4, ep.log
    # A folder others can write is never read: the app could plant a CA there.
    assert ep.lines("is writable by others than the entrypoint's user"), ep.log
    assert not kept.is_symlink() and target.read_text() != kept.read_text()


def test_check_validates_the_role_without_issuing_and_issues_only_with_issue(
        vault_server: Any, tmp_path: Path) -> None:
    vault = vault_server
    token = pki(vault, "1h")
    base = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token}
    refused = run_cli(["check"], {**base, "TLS_CERT": f"vault:{ISSUE}#certificate?write&"
                                  "common_name=evil.example&ttl=10m"})
    assert refused.returncode == 78, refused.stdout + refused.stderr
    assert "role web would refuse the request: name evil.example is not allowed" in \
        refused.stdout, refused.stdout
    good = {**base, "TLS_CERT": f"vault:{ISSUE}#certificate?write&common_name=a.app.internal",
            "ENTRYPOINT_CONFIG": str(write_config(tmp_path, ttl="10m"))}
    ok = run_cli(["check"], good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "role web allows it" in ok.stdout and "not issued" in ok.stdout, ok.stdout
    assert vault.count(ISSUE) == 0
    issued = run_cli(["check", "--issue"], good)
    assert issued.returncode == 0, issued.stdout + issued.stderr
    # The variable's row issues once; the templates' render reuses that answer for the
    # environment and issues only their own (path, params): 2, not 3 as before.
    assert vault.count(ISSUE) == 2, issued.stdout
