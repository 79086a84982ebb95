"""Where the real `vault` and `consul` binaries are, for the fixtures.

The same rule as tests/realservers/get-binaries.sh, which .ci/test runs first and which
builds what is missing (here a missing build is an error, not a build): VAULT_BIN /
CONSUL_BIN, else the name on PATH, else the binary built from tests/realservers/<name>/
into ~/.cache/entrypoint-tests/bin/<name>-<version>.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = {"vault": "github.com/hashicorp/vault", "consul": "github.com/hashicorp/consul"}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "entrypoint-tests" / "bin"


def pinned_version(name: str) -> str:
    """The release our Go module requires (tests/realservers/<name>/go.mod)."""
    text = (HERE / name / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(MODULES[name])} (v\S+)", text, re.M)
    if match is None:
        raise RuntimeError(f"tests/realservers/{name}/go.mod requires no {MODULES[name]}")
    return match.group(1)


@functools.cache
def find(name: str) -> str:
    """The binary's path: VAULT_BIN/CONSUL_BIN, PATH, or the cached build."""
    given = os.environ.get(f"{name.upper()}_BIN")
    if given:
        return given
    on_path = shutil.which(name)
    if on_path:
        return on_path
    built = cache_dir() / f"{name}-{pinned_version(name).lstrip('v')}"
    if not built.exists():
        # A cold build takes many minutes: never hidden inside a test's fixture.
        raise RuntimeError(f"no {name} binary: {built} is missing; run "
                           f"`bash tests/realservers/get-binaries.sh {name}` once (the "
                           "README's test command, .ci/test, does), or set "
                           f"{name.upper()}_BIN")
    return str(built)


def vault() -> str:
    return find("vault")


def consul() -> str:
    return find("consul")


def version(name: str) -> str:
    """What the binary says of itself (`vault version`, `consul version`): first line."""
    out = subprocess.run([find(name), "version"], capture_output=True, text=True, timeout=60)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"
