"""Attacks by the app on the short-lived processes the entrypoint starts as root (the AWS
signing helper, the wrapper that sets the parent-death signal), performed for real: the
app, running as ``nobody``, plants code where that process would load it from, and the
test checks that root never runs it while the feature still works.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import REPO, run_cli
from tests.services.ecs_credentials import EcsCredentialsServer, iam_user_credentials

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root")
HEADER = "vault.example.com"


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder others can traverse (pytest's tmp_path is root-only), removed at the end."""
    top = Path(tempfile.mkdtemp(prefix="ep-helper-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def as_nobody(*argv: str) -> None:
    subprocess.run(argv, user="nobody", group=pwd.getpwnam("nobody").pw_gid, check=True,
                   capture_output=True, timeout=10)


def app_folder(place: Path, name: str) -> Path:
    """A folder the app (nobody) owns and writes, as it would a volume or its workdir."""
    folder = place / name
    folder.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    return folder


def plant_package(folder: Path, name: str, marker: Path) -> None:
    """nobody writes ``folder/name/__init__.py``, which records the uid that ran it."""
    code = f"import os\nopen({str(marker)!r}, 'a').write(f'{{os.getuid()}} ')\n"
    as_nobody("mkdir", str(folder / name))
    as_nobody("sh", "-c", 'printf "%s" "$1" > "$2"', "sh", code,
              str(folder / name / "__init__.py"))


@pytest.mark.parametrize("where", ["workdir", "libs"])
def test_botocore_planted_by_the_app_does_not_run_in_the_signing_helper(
        vault_server: Any, moto_sts: Any, place: Path, tmp_path: Path, where: str) -> None:
    """The helper was given the entrypoint's whole sys.path: the working folder (first,
    under ``python -m``) and PYTHONPATH. The app, owning both, planted ``botocore`` in
    either (one at a time here) and the helper imported it as root at the aws-iam login.
    Now it is given only the folders botocore and its dependencies were found in,
    elsewhere: the login works and the planted code never runs."""
    workdir, libs = app_folder(place, "workdir"), app_folder(place, "libs")
    marker = app_folder(place, "out") / "ran-as"
    plant_package(workdir if where == "workdir" else libs, "botocore", marker)
    vault_server.configure_aws(moto_sts, header_value=HEADER)
    vault_server.set_policy("app", {"secret/data/app/*": ["read"]})
    vault_server.write_kv("secret", "app/db", {"password": "aws-login-secret-1"})
    with EcsCredentialsServer(iam_user_credentials(moto_sts)) as endpoint:
        vault_server.add_aws_role("app", endpoint.arn, ["app"], ttl=600)
        env = {"VAULT_ADDR": vault_server.addr, "ENTRYPOINT_VAULT_ROLE": "app",
               "ENTRYPOINT_VAULT_AWS_HEADER": HEADER,
               "DB_PASSWORD": "vault:secret/app/db#password",
               "PYTHONPATH": os.pathsep.join([str(REPO), str(libs)]),
               "AWS_CONFIG_FILE": str(tmp_path / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_EC2_METADATA_DISABLED": "true", **endpoint.env()}
        done = run_cli(["--control-socket", "", "--user", "nobody", "--", "sh", "-c",
                        'test "$DB_PASSWORD" = aws-login-secret-1'], env, cwd=workdir)
    assert not marker.exists(), f"planted botocore ran as uid {marker.read_text()}"
    assert done.returncode == 0, done.stderr
    assert vault_server.count("auth/aws/login") == 1
