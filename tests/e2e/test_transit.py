"""Values stored encrypted (``transit:KEY#CIPHERTEXT``, and ``vault:v1:...`` as bank-vaults
vault-env writes them) decrypted at start by the real Vault's transit engine, and by the
local secrets directory on a laptop."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_cli

PRINT = ["--exec", "--", "sh", "-c", 'printf "%s|%s|%s" "$A" "$B" "$C"']


@pytest.fixture
def transit(vault_server: Any) -> dict[str, Any]:
    """A transit key ``app``, two ciphertexts, and a token that may only decrypt with it."""
    vault = vault_server
    vault.enable_secrets("transit")
    vault.api("POST", "transit/keys/app")

    def encrypt(text: str) -> str:
        plain = base64.b64encode(text.encode()).decode()
        answer = vault.api("POST", "transit/encrypt/app", {"plaintext": plain})
        ciphertext: str = answer["data"]["ciphertext"]
        return ciphertext

    vault.set_policy("decrypt", {"transit/decrypt/app": ["update"]})
    return {"vault": vault, "one": encrypt("décrypté-one"), "two": encrypt("plain two"),
            "token": vault.create_token(["decrypt"], ttl=600)}


def test_both_forms_decrypt_at_start_and_nothing_is_logged(transit: dict[str, Any]) -> None:
    vault = transit["vault"]
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": transit["token"],
           "ENTRYPOINT_TRANSIT_KEY": "app",
           "A": f"transit:app#{transit['one']}", "B": transit["two"],
           "C": f"user=${{transit:app#{transit['two']}}};"}
    result = run_cli(PRINT, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "décrypté-one|plain two|user=plain two;"
    assert "décrypté-one" not in result.stderr and "plain two" not in result.stderr
    # One decryption per distinct reference (B and C name the same ciphertext in two
    # forms: the key of one is the transit_key setting, of the other the reference's).
    assert vault.count("transit/decrypt/app") == 3


def test_a_bad_ciphertext_or_a_missing_key_is_a_clear_config_error(
        transit: dict[str, Any]) -> None:
    vault = transit["vault"]
    base = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": transit["token"]}
    forged = transit["one"][:-6] + "AAAAAA"
    result = run_cli(PRINT, {**base, "A": f"transit:app#{forged}"})
    assert result.returncode == 78, result.stderr
    assert "decrypt with transit key app refused" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(PRINT, {**base, "B": transit["two"]})
    assert result.returncode == 78, result.stderr
    assert "is a transit ciphertext, and no transit key is set" in result.stderr
    assert "transit_key" in result.stderr
    result = run_cli(PRINT, {**base, "A": f"transit:other#{transit['one']}"})
    assert result.returncode == 77, result.stderr  # the token may only use key app


def test_check_decrypts_without_showing_the_value(transit: dict[str, Any]) -> None:
    vault = transit["vault"]
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": transit["token"],
           "A": f"transit:app#{transit['one']}"}
    result = run_cli(["check", "--format", "json"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["rows"]
    [row] = [r for r in rows if r["kind"] == "transit"]
    assert row["status"] == "ok" and "décrypté" not in result.stdout


def test_the_local_secrets_directory_answers_transit_values(tmp_path: Path) -> None:
    ciphertext = "vault:v1:bG9jYWwgY2lwaGVydGV4dA=="
    (tmp_path / "transit").mkdir()
    (tmp_path / "transit" / "app.json").write_text(json.dumps({ciphertext: "local plain"}))
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path), "ENTRYPOINT_TRANSIT_KEY": "app",
           "A": f"transit:app#{ciphertext}", "B": ciphertext, "C": "c"}
    result = run_cli(PRINT, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "local plain|local plain|c"
    result = run_cli(PRINT, {**env, "A": "transit:app#vault:v1:bm90IHRoZXJl"})
    assert result.returncode == 78 and "has no plaintext for this ciphertext" in result.stderr


def test_a_template_decrypts_with_decrypt(transit: dict[str, Any], tmp_path: Path) -> None:
    vault = transit["vault"]
    out = tmp_path / "app.conf"
    config = tmp_path / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        f"contents = \"password={{{{ decrypt('app', '{transit['one']}') }}}}\"\n"
        f"destination = \"{out}\"\n")
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": transit["token"],
           "ENTRYPOINT_CONFIG": str(config)}
    result = run_cli(["render"], env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "password=décrypté-one"
    assert "décrypté" not in result.stdout + result.stderr
