"""Run the real ``entrypoint`` CLI as a subprocess, as a user would.

Every test that starts the entrypoint goes through here: ``run_cli`` runs it to its end
(``subprocess.run``), ``start_cli`` starts it and returns the ``Popen`` (a resident
entrypoint, or one whose output goes to a file), and ``entrypoint_argv`` is the command
line for the few tests that hand it to something else (a shell, a pseudo-terminal).
The environment is always ``clean_env(env)`` unless ``clean=False`` passes ``env`` as is.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

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


def without_site_hooks(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for an interpreter started with ``-S``, for tests that read what a process
    imports: the machine's own ``.pth`` files (a sandbox's CA hook, a sitecustomize) may
    import shutil and the like before the entrypoint runs, which a production venv does not.
    The site-packages go on PYTHONPATH instead: on the path, without running their hooks."""
    paths = [str(REPO), *site.getsitepackages()]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def entrypoint_argv(args: Sequence[str] = (), *, python: str = sys.executable,
                    python_flags: Sequence[str] = ()) -> list[str]:
    """``python [FLAGS] -m entrypoint ARGS``: ``python_flags`` such as ``-X importtime``."""
    return [python, *python_flags, "-m", "entrypoint", *args]


def _env(env: Any, clean: bool) -> Any:
    return clean_env(env) if clean else env


@overload
def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
            timeout: float = 60, cwd: Path | None = None, input_text: str | None = None,
            python: str = sys.executable, python_flags: Sequence[str] = (),
            clean: bool = True, text: Literal[True] = True,
            **run: Any) -> subprocess.CompletedProcess[str]: ...
@overload
def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
            timeout: float = 60, cwd: Path | None = None, input_text: str | None = None,
            python: str = sys.executable, python_flags: Sequence[str] = (),
            clean: bool = True, text: Literal[False],
            **run: Any) -> subprocess.CompletedProcess[bytes]: ...
def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
            timeout: float = 60, cwd: Path | None = None, input_text: str | None = None,
            python: str = sys.executable, python_flags: Sequence[str] = (),
            clean: bool = True, text: bool = True,
            **run: Any) -> subprocess.CompletedProcess[Any]:
    """Run the entrypoint to its end; stdout and stderr captured (as text unless
    ``text=False``) unless ``run`` redirects them; ``run`` (``preexec_fn``, ``user``,
    ``pass_fds``...) goes to ``subprocess.run``."""
    if "stdout" not in run and "stderr" not in run:
        run.setdefault("capture_output", True)
    if input_text is not None:
        run["input"] = input_text
    return subprocess.run(entrypoint_argv(args, python=python, python_flags=python_flags),
                          env=_env(env, clean), timeout=timeout, cwd=cwd, text=text, **run)


@overload
def start_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
              python: str = sys.executable, python_flags: Sequence[str] = (),
              prefix: Sequence[str] = (), clean: bool = True, text: Literal[True],
              **popen: Any) -> subprocess.Popen[str]: ...
@overload
def start_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
              python: str = sys.executable, python_flags: Sequence[str] = (),
              prefix: Sequence[str] = (), clean: bool = True, text: Literal[False] = False,
              **popen: Any) -> subprocess.Popen[bytes]: ...
def start_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
              python: str = sys.executable, python_flags: Sequence[str] = (),
              prefix: Sequence[str] = (), clean: bool = True, text: bool = False,
              **popen: Any) -> subprocess.Popen[Any]:
    """Start the entrypoint and return its ``Popen``; ``popen`` goes to ``subprocess.Popen``
    (``stderr=``, ``stdout=``, ``cwd=``...). ``prefix`` runs it under another command
    (a shell, ``unshare``)."""
    argv = [*prefix, *entrypoint_argv(args, python=python, python_flags=python_flags)]
    return subprocess.Popen(argv, env=_env(env, clean), text=text, **popen)


__all__ = ["ENTRYPOINT", "REPO", "clean_env", "entrypoint_argv", "run_cli", "start_cli",
           "wait_until", "without_site_hooks"]
