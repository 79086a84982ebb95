"""The virtual environment every measured command runs in: the wheel of this tree and its
runtime dependencies, nothing else, on the interpreter that runs the benchmark.

Built once per state of the package's sources and cached under
``~/.cache/entrypoint-bench/venv-<hash>`` (the hash covers pyproject.toml, every file
under entrypoint/ and the interpreter's version and path), so reruns start at once and an
edit to the package builds a new one. A build:

1. copies the tree without tests, benchmarks and build debris into a temporary folder
   (the build writes next to its sources; the working tree stays untouched),
2. ``pip wheel --no-deps`` of that copy (the build backend pyproject.toml asks for, in
   pip's isolated build environment),
3. ``python -m venv`` with the benchmark's own interpreter, and ``pip install`` of the
   wheel: its runtime dependencies come from the package index, no test or dev extra,
4. checks that no test or dev package came in, and records ``pip freeze``.

pip compiles the installed modules' bytecode, as it does for any installed package, so no
start pays for compiling a module edited since its last .pyc.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "entrypoint-bench"
KEEP = 3  # cached venvs kept (the newest); older ones are removed after a build
# Copied for the build: not the tests, not the benchmarks, nor what earlier builds left.
IGNORE = shutil.ignore_patterns(".git", "tests", "benchmarks", "__pycache__", "*.pyc",
                                ".venv", "build", "dist", "*.egg-info", ".mypy_cache",
                                ".ruff_cache", ".pytest_cache", ".hypothesis")
# What must not be in the venv: the test and dev extras of pyproject.toml (and pip's
# own build tools, which a wheel install never needs).
NOT_RUNTIME = ("pytest", "pytest-timeout", "hypothesis", "moto", "psycopg", "psycopg-binary",
               "boto3", "prometheus-client", "prometheus_client", "ruff", "mypy",
               "types-requests")


@dataclass(frozen=True)
class BenchVenv:
    path: Path
    key: str
    wheel: str
    freeze: list[str]
    built_now: bool

    @property
    def python(self) -> str:
        return str(self.path / "bin/python")

    @property
    def entrypoint(self) -> str:
        return str(self.path / "bin/entrypoint")

    def describe(self) -> str:
        packages = ", ".join(self.freeze)
        return (f"venv {self.path} ({'built now' if self.built_now else 'cached'}): "
                f"{self.wheel} and {len(self.freeze)} runtime dependencies "
                f"[{packages}], Python {sys.version.split()[0]}")


def sources_key() -> str:
    """A hash of what the wheel is built from, and of the interpreter it runs on."""
    digest = hashlib.sha256()
    digest.update(f"{sys.version}\0{sys._base_executable}\0".encode())  # type: ignore[attr-defined]
    files = [REPO / "pyproject.toml",
             *sorted(p for p in (REPO / "entrypoint").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")]
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(argv: list[str], what: str, **kwargs: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                            **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}"
                           f"\n{result.stderr[-3000:]}")
    return str(result.stdout)


def _build(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="entrypoint-bench-build-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(REPO, tree, ignore=IGNORE)
        wheels = Path(tmp) / "wheels"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
              "--disable-pip-version-check", "--wheel-dir", str(wheels), str(tree)],
             "pip wheel of the tree")
        (wheel,) = wheels.glob("*.whl")
        _run([sys.executable, "-m", "venv", str(target)], "python -m venv")
        _run([str(target / "bin/python"), "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", str(wheel)], "pip install of the wheel")
        freeze = _run([str(target / "bin/python"), "-m", "pip", "freeze", "--all",
                       "--exclude", "pip", "--exclude", "setuptools", "--exclude", "wheel",
                       "--exclude", "vault-entrypoint"], "pip freeze").split()
        names = {line.split("==")[0].lower() for line in freeze}
        extra = sorted(names & {n.lower() for n in NOT_RUNTIME})
        if extra:
            raise RuntimeError(f"the benchmark venv holds test or dev packages: {extra}")
        (target / "bench-wheel.txt").write_text(wheel.name + "\n")
        (target / "bench-freeze.txt").write_text("\n".join(freeze) + "\n")


def _prune(keep: Path) -> None:
    """Remove the older cached venvs, keeping the newest KEEP (``keep`` among them)."""
    venvs = sorted((p for p in CACHE.glob("venv-*") if p != keep and p.is_dir()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in venvs[KEEP - 1:]:
        shutil.rmtree(old, ignore_errors=True)


@functools.cache
def bench_venv() -> BenchVenv:
    """The venv for this state of the tree: from the cache, or built (a few tens of s)."""
    key = sources_key()
    target = CACHE / f"venv-{key}"
    done = target / "bench-complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    built_now = False
    with (CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmark runs never build into one folder
        try:
            if not done.exists():
                if target.exists():  # an interrupted build
                    shutil.rmtree(target)
                print(f"... building the benchmark venv {target} (wheel of this tree + "
                      "runtime dependencies from the index)", file=sys.stderr, flush=True)
                started = time.monotonic()
                try:
                    _build(target)
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
                done.write_text(f"{time.time()}\n")
                built_now = True
                print(f"    built in {time.monotonic() - started:.0f}s", file=sys.stderr,
                      flush=True)
                with contextlib.suppress(OSError):
                    _prune(target)
            os.utime(target)  # recently used: kept by the next prune
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return BenchVenv(path=target, key=key, wheel=(target / "bench-wheel.txt").read_text().strip(),
                     freeze=(target / "bench-freeze.txt").read_text().split(),
                     built_now=built_now)


if __name__ == "__main__":
    print(bench_venv().describe())
