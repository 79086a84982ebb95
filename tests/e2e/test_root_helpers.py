"""Attacks by the app on the short-lived processes the entrypoint starts as root (the AWS
signing helper, the wrapper that sets the parent-death signal), performed for real: the
app, running as ``nobody``, plants code where that process would load it from, and the
test checks that root never runs it while the feature still works.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.attacks import as_nobody, reachable_folder
from tests.helpers.cli import REPO, run_cli
from tests.services.ecs_credentials import EcsCredentialsServer, iam_user_credentials

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root")
HEADER = "vault.example.com"


@pytest.fixture
def place() -> Iterator[Path]:
    with reachable_folder("ep-helper-") as top:
        yield top



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


PRELOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void hit(void) {
  char p[4096]; snprintf(p, sizeof p, "%s/hit.%d.uid%d", OUT, getpid(), getuid());
  FILE *f = fopen(p, "w"); if (f) fclose(f);
}
"""
SHOW_ENV = "import json, os, sys; print(json.dumps(dict(os.environ)))"


def loader_variables(kind: str, place: Path, out: Path) -> dict[str, str]:
    """What the app puts in a secret it can write, for the dynamic loader to act on."""
    if kind == "LD_DEBUG_OUTPUT":  # the loader writes its log to a path the app chose
        return {"LD_DEBUG": "files", "LD_DEBUG_OUTPUT": str(out / "hit")}
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the LD_PRELOAD library")
    source = place / "evil.c"
    source.write_text(f'#define OUT "{out}"\n' + PRELOAD_C)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(place / "evil.so"), str(source)],
                   check=True, capture_output=True, timeout=60)
    (place / "evil.so").chmod(0o755)
    return {"LD_PRELOAD": str(place / "evil.so")}


def run_app(secrets: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    """The app (nobody) prints its environment as JSON."""
    return run_cli(["--control-socket", "", "--user", "nobody", "--secrets", "kv/app",
                    *extra, "--", "/usr/bin/python3", "-I", "-c", SHOW_ENV],
                   {"ENTRYPOINT_LOCAL_SECRETS": str(secrets), "ODD": "a=b\nc\x01 é"},
                   cwd=REPO)


def app_env(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    shown: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return shown


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="needs /usr/bin/python3")
@pytest.mark.parametrize("kind", ["LD_PRELOAD", "LD_DEBUG_OUTPUT"])
def test_loader_variables_in_the_apps_environment_reach_no_root_process(
        place: Path, kind: str) -> None:
    """With parent_death_signal and user, a Python wrapper runs as root before the app to
    switch user and set the signal; it ran with the app's environment, which the app can
    fill: here through a secret it can write, bulk-exported. The loader acted on it as
    root (an LD_PRELOAD library ran as uid 0; LD_DEBUG_OUTPUT had root create files where
    the app chose). The wrapper now starts with an empty environment and gets the app's
    through a pipe: only the app (nobody) sees those variables, and it gets exactly the
    environment it gets without the option."""
    out = app_folder(place, "out")
    secrets = place / "secrets"
    (secrets / "kv").mkdir(parents=True)
    planted = loader_variables(kind, place, out)
    app_json = secrets / "kv" / "app.json"
    app_json.touch()
    os.chown(app_json, pwd.getpwnam("nobody").pw_uid, -1)  # the app may write this secret
    as_nobody("sh", "-c", 'printf "%s" "$1" > "$2"', "sh", json.dumps(planted), str(app_json))

    done = run_app(secrets, ["--parent-death-signal", "TERM"])
    owners = {path.name: path.stat().st_uid for path in out.iterdir()}
    assert owners, f"the app itself ({kind}) should have left its trace"
    assert set(owners.values()) == {pwd.getpwnam("nobody").pw_uid}, (
        f"the loader acted on {kind} in a root process: {owners}")
    with_wrapper = app_env(done)
    assert with_wrapper == app_env(run_app(secrets, []))
    assert with_wrapper["ODD"] == "a=b\nc\x01 é"
    for name, value in planted.items():
        assert with_wrapper[name] == value
