"""Dynamic secrets that are not kept by renewing a lease, against the real Vault: AWS STS
credentials from the AWS secrets engine (pointed at moto's IAM and STS) and identity
tokens, which Vault hands out with a ``ttl`` in the data and no lease at all. Each is
replaced once before it ends, never re-read by the KV poll, and the app restarts once per
replacement (today's bug: a lease-less secret was polled and restarted the app at every
poll, because each read is a new value)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

from tests.helpers.cli import run_cli, wait_until
from tests.helpers.vault_rotation import APP_POLICY, APP_PROBE, Running, approle_login, start

POLL = ["--poll-interval", "2s", "--wait-min", "100ms", "--wait-max", "500ms"]


def starts(ep: Running) -> list[dict[str, Any]]:
    return ep.events("start")


def test_aws_sts_credentials_are_replaced_by_their_ttl_not_by_the_poll(
        vault_server: Any, moto_sts: Any, tmp_path: Path, procs: list[Running]) -> None:
    """AWS refuses STS credentials shorter than 900 s (moto too: "minimum field value of
    900"), so the replacement itself is timed with the 20 s identity token below; here the
    real engine's answer (a lease that cannot be renewed) is shown to be read once, kept
    out of the 5 s KV poll, and scheduled for replacement by its own ttl."""
    vault = vault_server
    iam = moto_sts.admin_client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName="app",
                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    vault.enable_secrets("aws")
    vault.api("POST", "aws/config/root", {
        "access_key": moto_sts.admin_access_key_id,
        "secret_key": moto_sts.admin_secret_access_key, "region": "us-east-1",
        "iam_endpoint": moto_sts.endpoint_url, "sts_endpoint": moto_sts.endpoint_url})
    vault.api("POST", "aws/roles/app", {"credential_type": "assumed_role",
                                         "role_arns": [arn], "default_sts_ttl": 900,
                                         "max_sts_ttl": 900})
    vault.write_kv("secret", "app/config", {"greeting": "hello"})
    vault.set_policy("app", {"aws/sts/app": ["read", "update"], "secret/data/*": ["read"],
                             "sys/leases/revoke": ["update"]})
    token = vault.create_token(["app"], ttl=3600)
    sock = str(tmp_path / "control.sock")
    env = {"VAULT_ADDR": vault.addr, "VAULT_TOKEN": token,
           "AWS_ACCESS_KEY_ID": "vault:aws/sts/app#access_key",
           "AWS_SECRET_ACCESS_KEY": "vault:aws/sts/app#secret_key",
           "AWS_SESSION_TOKEN": "vault:aws/sts/app#security_token",
           "GREETING": "vault:secret/app/config#greeting"}
    ep = start(tmp_path, {**env, "ENTRYPOINT_CONTROL_SOCKET": sock}, POLL,
               [sys.executable, APP_PROBE, "{journal}", "AWS_ACCESS_KEY_ID"])
    procs.append(ep)
    wait_until(lambda: len(starts(ep)) >= 1 or ep.proc.poll() is not None, timeout=30,
               what="the app's first start")
    assert starts(ep), ep.log
    wait_until(lambda: vault.count("secret/data/app/config") >= 4, timeout=30,
               what="three KV polls")
    snap = run_cli(["status", "--format", "json"], {"ENTRYPOINT_CONTROL_SOCKET": sock})
    assert snap.returncode == 0, snap.stderr
    [sts] = [k for k in json.loads(snap.stdout)["keys"] if k["key"] == "vault:aws/sts/app"]
    code = ep.stop()
    assert code == 0, ep.log
    assert len(starts(ep)) == 1 and vault.count("aws/sts/app") == 1, ep.log
    # Replaced at replace_fraction (0.8 by default, jittered) of 900 s, never polled.
    assert sts["kind"] == "leased" and sts["next"] == "replace", sts
    assert 0.7 * 900 < sts["next_in"] < 900 and 880 < sts["ttl"] <= 900, sts
    ep.assert_no_secret_logged()


def test_a_lease_less_identity_token_is_replaced_by_its_ttl_not_at_every_poll(
        vault_server: Any, tmp_path: Path, procs: list[Running]) -> None:
    """identity/oidc/token answers with ``ttl`` in the data and no lease: every read is
    a new token, so polling it would restart the app at every poll."""
    vault = vault_server
    login = approle_login(vault)  # an entity of its own: what an identity token names
    vault.set_policy("app", {**APP_POLICY, "identity/oidc/token/app": ["read"]})
    vault.api("POST", "identity/oidc/key/k", {"allowed_client_ids": ["*"]})
    vault.api("POST", "identity/oidc/role/app", {"key": "k", "ttl": "20s"})
    env = {"VAULT_ADDR": vault.addr, **login,
           "ID_TOKEN": "vault:identity/oidc/token/app#token"}
    ep = start(tmp_path, env, ["--poll-interval", "2s", "--wait-min", "100ms",
                               "--wait-max", "500ms"],
               [sys.executable, APP_PROBE, "{journal}", "ID_TOKEN"])
    procs.append(ep)
    wait_until(lambda: len(starts(ep)) >= 3, timeout=60, what="two replacements")
    code = ep.stop()
    assert code == 0, ep.log
    tokens = [s["env"]["ID_TOKEN"] for s in starts(ep)]
    reads = [r.timestamp for r in vault.requests if r.path == "identity/oidc/token/app"]
    assert len(set(tokens)) == len(tokens) and len(reads) == len(tokens), (tokens, reads)
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert all(10 <= gap < 20 for gap in gaps), gaps  # by the ttl, not every 2 s poll
    assert ep.lines("nearing the end of its ttl")
    ep.assert_no_secret_logged(*tokens)
