"""Run the real ``entrypoint`` CLI as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.services.ports import wait_until

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = [sys.executable, "-m", "entrypoint"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without anything that configures the entrypoint."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENTRYPOINT_", "VAULT_", "CONSUL_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
            timeout: float = 60, cwd: Path | None = None,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRYPOINT, *args], env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, input=input_text)


__all__ = ["ENTRYPOINT", "REPO", "clean_env", "run_cli", "wait_until"]
