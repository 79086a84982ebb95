"""tests/realservers/get-binaries.sh, the one way CI and the suite get `vault` and `consul`:
CONSUL_BIN/VAULT_BIN, else PATH, else the cached build. Stand-in binaries here (a script
that prints a version): the rule is under test, not Consul; the build itself is what
.ci/test runs for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import REPO

SCRIPT = REPO / "tests/realservers/get-binaries.sh"


def fake_binary(path: Path, says: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)
    return path


def pinned(name: str) -> str:
    text = (REPO / f"tests/realservers/{name}/go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?github\.com/hashicorp/{name} v(\S+)", text, re.M)
    assert match is not None
    return match.group(1)


def run(tmp_path: Path, *names: str, path: str | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    """The script with nothing from this machine: an empty cache, PATH without go or
    consul unless given, no *_BIN unless given."""
    base = {k: v for k, v in os.environ.items() if k not in ("VAULT_BIN", "CONSUL_BIN")}
    base.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PATH=path or "/usr/bin:/bin", **env)
    return subprocess.run(["bash", str(SCRIPT), *names], env=base, capture_output=True,
                          text=True, timeout=60)


def test_a_named_binary_wins_and_its_version_is_logged(tmp_path: Path) -> None:
    consul = fake_binary(tmp_path / "my bin/consul", "Consul v9.9.9")
    proc = run(tmp_path, "consul", CONSUL_BIN=str(consul))
    assert proc.returncode == 0, proc.stderr
    assert f"consul from CONSUL_BIN: {consul}" in proc.stderr
    assert "consul version: Consul v9.9.9" in proc.stderr
    # The output is for eval (the path has a space in it).
    shell = subprocess.run(["bash", "-c", f'eval "{proc.stdout}"; printf %s "$CONSUL_BIN"'],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == str(consul)


def test_a_named_file_that_cannot_run_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "consul").write_text("not a program")
    proc = run(tmp_path, "consul", CONSUL_BIN=str(tmp_path / "consul"))
    assert proc.returncode == 1
    assert "is not an executable file" in proc.stderr
    assert proc.stdout == ""


def test_path_comes_next(tmp_path: Path) -> None:
    fake_binary(tmp_path / "bin/vault", "Vault v0.0.1")
    proc = run(tmp_path, "vault", path=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"VAULT_BIN={tmp_path / 'bin/vault'}\n"
    assert "vault from PATH" in proc.stderr and "Vault v0.0.1" in proc.stderr


def test_then_the_cached_build_of_the_pinned_version(tmp_path: Path) -> None:
    """The cache file is named after the version go.mod pins; a cached binary is used
    without Go."""
    cached = fake_binary(tmp_path / f"cache/entrypoint-tests/bin/consul-{pinned('consul')}",
                         "Consul v-cached")
    proc = run(tmp_path, "consul")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"CONSUL_BIN={cached}\n"
    assert "cached" in proc.stderr and "Consul v-cached" in proc.stderr


def test_both_by_default(tmp_path: Path) -> None:
    vault = fake_binary(tmp_path / "v/vault", "Vault v0.0.1")
    consul = fake_binary(tmp_path / "c/consul", "Consul v0.0.1")
    proc = run(tmp_path, VAULT_BIN=str(vault), CONSUL_BIN=str(consul))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"VAULT_BIN={vault}", f"CONSUL_BIN={consul}"]


def test_without_a_binary_or_go_it_says_what_to_do(tmp_path: Path) -> None:
    if shutil.which("go", path="/usr/bin:/bin") or shutil.which("consul", path="/usr/bin:/bin"):
        pytest.skip("go or consul is in /usr/bin or /bin here")
    proc = run(tmp_path, "consul")
    assert proc.returncode == 1
    assert "no consul binary and no Go toolchain to build one" in proc.stderr
    assert "CONSUL_BIN" in proc.stderr


def test_an_unknown_name_is_refused(tmp_path: Path) -> None:
    proc = run(tmp_path, "nomad")
    assert proc.returncode == 2
    assert "unknown binary nomad" in proc.stderr
