"""Heavy clients are imported only when used (DESIGN.md, "Speed and size targets"; issue 8).

What the real process imports is read from ``python -X importtime``: every first import
of the entrypoint process is listed on its stderr, up to the exec or the shutdown. The
app started here is not run with ``-X importtime``, so none of its imports are listed.

- ``--exec`` on the local directory needs none of hvac, botocore, consul, watchdog.
- Vault is spoken to with http.client: hvac, requests and urllib3 are never loaded.
- The resident ``run`` on the local directory watches that directory with watchdog (that
  is using it), and needs none of the Vault, AWS or Consul clients.
- The resident ``run`` with an aws-iam login never imports botocore: the signature is made
  by a short-lived helper process (``auth/aws_sign.py``), whose imports are its own; and
  without options before ``--``, argparse is not loaded to parse none.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import REPO, clean_env, run_cli, start_cli, without_site_hooks
from tests.helpers.journal import wait_for
from tests.services.ecs_credentials import EcsCredentialsServer, iam_user_credentials

PROBE = str(REPO / "tests/helpers/app_probe.py")
CLIENTS = ("hvac", "botocore", "consul", "requests")


def imported(stderr: str) -> set[str]:
    """Top-level names of every module the process imported, from -X importtime lines."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "kv/app/db.json").write_text(json.dumps({"password": "local-pw", "user": "app"}))
    return root


def local_env(secrets: Path) -> dict[str, str]:
    return clean_env({
        "ENTRYPOINT_LOCAL_SECRETS": str(secrets),
        "ENTRYPOINT_CONTROL_SOCKET": "",
        "DB_PASSWORD": "vault:kv/app/db#password",
        "DB_USER": "vault:kv/app/db#user",
    })


def test_exec_on_the_local_directory_imports_no_heavy_client(secrets: Path) -> None:
    app = [sys.executable, "-c", "import os; print('app got', os.environ['DB_USER'])"]
    result = run_cli(["--exec", "--", *app], local_env(secrets), clean=False,
                     python_flags=["-X", "importtime"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "app got app"  # the exec happened
    names = imported(result.stderr)
    assert "entrypoint" in names  # the listing is really there
    assert names.isdisjoint({*CLIENTS, "watchdog"}), sorted(names & {*CLIENTS, "watchdog"})


def resident_listing(argv: list[str], env: dict[str, str], tmp_path: Path,
                     expected: dict[str, str], *, site_hooks: bool = True,
                     **run: object) -> str:
    """Start the resident entrypoint under ``-X importtime``, wait for the app to start on
    ``expected``, stop it with SIGTERM (exit 0) and return the whole import listing.
    ``site_hooks=False``: under ``-S`` (``without_site_hooks``), for a standard-library
    module the machine's ``.pth`` files may import first. Not for the aws-iam login: its
    helper rightly refuses botocore from PYTHONPATH (``helper_path``)."""
    journal = tmp_path / "journal"
    stderr_file = tmp_path / "stderr"
    flags = ["-X", "importtime"] if site_hooks else ["-S", "-X", "importtime"]
    with stderr_file.open("w") as stderr:
        proc = start_cli([*argv, "--", sys.executable, PROBE, str(journal), *expected],
                         env if site_hooks else without_site_hooks(env),
                         python_flags=flags, stdout=subprocess.DEVNULL,
                         stderr=stderr, text=True, **run)
        try:
            assert wait_for(journal, "start")[0]["env"] == expected
            # The watch and the login are done before the app starts: stop, read it all.
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return stderr_file.read_text()


def test_resident_run_on_the_local_directory_imports_watchdog_only(
        secrets: Path, tmp_path: Path) -> None:
    listing = resident_listing(["--kill-timeout", "5s"], local_env(secrets), tmp_path,
                               {"DB_PASSWORD": "local-pw"}, site_hooks=False, clean=False)
    names = imported(listing)
    assert "watchdog" in names  # the local directory is watched: that is using it
    assert names.isdisjoint(CLIENTS), sorted(names & set(CLIENTS))
    # ctypes.util, which watchdog imports and never calls, and what it would bring.
    skipped = {"shutil", "tempfile", "bz2", "lzma", "zlib"}
    assert names.isdisjoint(skipped), sorted(names & skipped)
    assert "ctypes.util" not in {line.rsplit("|", 1)[1].strip() for line in listing.splitlines()
                                 if line.startswith("import time:") and "|" in line}


def test_resident_run_with_an_aws_iam_login_never_imports_botocore(
        vault_server: Any, moto_sts: Any, aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vault_server.configure_aws(moto_sts, header_value="vault.example.com")
    vault_server.set_policy("app", {"secret/data/app/*": ["read"]})
    vault_server.write_kv("secret", "app/db", {"password": "aws-lazy-secret"})
    with EcsCredentialsServer(iam_user_credentials(moto_sts)) as endpoint:
        vault_server.add_aws_role("app", endpoint.arn, ["app"], ttl=600)
        env = {"VAULT_ADDR": vault_server.addr, "ENTRYPOINT_VAULT_AUTH": "aws-iam",
               "ENTRYPOINT_VAULT_ROLE": "app", "ENTRYPOINT_VAULT_AWS_HEADER": "vault.example.com",
               "ENTRYPOINT_CONTROL_SOCKET": "", "DB_PASSWORD": "vault:secret/app/db#password",
               "AWS_CONFIG_FILE": str(tmp_path / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_EC2_METADATA_DISABLED": "true", **endpoint.env()}
        # The usual form, no option before "--": argparse is not loaded either.
        text = resident_listing([], env, tmp_path, {"DB_PASSWORD": "aws-lazy-secret"})
        assert endpoint.requests, "the helper read the keys from the ECS endpoint"
    assert "logged in with aws-iam (auth/aws) role app" in text
    assert vault_server.count("auth/aws/login") == 1
    names = imported(text)
    assert {"entrypoint", "http"} <= names  # the listing is there, and Vault was used
    assert "botocore" not in names and "boto3" not in names
    assert "argparse" not in names
    # Vault is spoken to with http.client: no HTTP library stays resident for it.
    assert names.isdisjoint({"hvac", "requests", "urllib3"}), sorted(
        names & {"hvac", "requests", "urllib3"})
    # Writes (PKI) are not used here: their module, and OpenSSL's hashlib, stay out.
    assert "hashlib" not in names
    modules = {line.rsplit("|", 1)[1].strip() for line in text.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "entrypoint.sources.vault.transport" in modules
    assert endpoint.credentials.secret_access_key not in text
