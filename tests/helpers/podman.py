"""Dockerfile.example built and run for real: rootful podman with runc, no registry.

No registry can be reached from the test machines, so the ``FROM`` image is made here:
``mmdebstrap`` of Debian bookworm with python3, python3-pip and python-is-python3 (the
same Python 3.11 as ``python:3.11-slim``), its ``EXTERNALLY-MANAGED`` marker removed so
that ``pip install`` behaves as in the official image, imported with ``podman import``.
The build replaces the Dockerfile's public ``FROM`` with it (``podman build --from``), so
the file itself stays as users read it.

The project's runtime dependencies (and setuptools, its build backend) come from a local
wheelhouse mounted into the build with a ``no-index`` pip config at ``/etc/pip.conf``, and
the build runs with ``--network none``: what the image holds is what the Dockerfile says.

Both the Debian root filesystem (a tarball) and the wheelhouse are cached under
``~/.cache/entrypoint-tests/podman/``, keyed by what made them, so a warm run only
imports (if the image store was wiped) and builds the app image. The app image is built
once per test session under a per-run tag and removed at its end; containers are
removed by the test that made them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services.ports import wait_until

REPO = Path(__file__).resolve().parents[2]
# Next to the Vault and Consul binaries (tests/realservers/binaries.py).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "entrypoint-tests/podman")

# The hard limits of these machines are below podman's defaults (1048576 open files),
# and runc refuses to raise them; cgroupfs since there is no systemd to ask.
GLOBAL = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

# What the base image is made of. Any change here changes the cache key.
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3")
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",  # Priority: required, which has passwd (useradd, groupadd)
    "--include=" + ",".join(BASE_PACKAGES),
    # Documentation and translations: a fifth of the size, never read in a test.
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    # python:3.11-slim's pip installs system-wide; Debian's refuses (PEP 668) unless the
    # marker is gone.
    '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
)
BASE_REPOSITORY = "localhost/entrypoint-test-base"
APP_REPOSITORY = "localhost/entrypoint-test-sample-app"
RUN_LABEL = "entrypoint-tests.run"
RUN_ID = uuid.uuid4().hex[:10]


class PodmanError(RuntimeError):
    """A podman (or image-making) command failed; the message has its output's tail."""


def missing() -> str | None:
    """Why the container tests cannot run here, or None when they can."""
    if sys.platform != "linux":
        return "the container tests need Linux with podman"
    if shutil.which("podman") is None:
        return ("podman is not installed: as root, `bash .ci/install-services` installs "
                "Debian's podman, runc and mmdebstrap")
    if shutil.which("runc") is None:
        return "runc is not installed (Debian: apt-get install runc)"
    if os.geteuid() != 0:
        return "the container tests run rootful podman: run them as root"
    if _cached_base_tar() is None and shutil.which("mmdebstrap") is None:
        return ("mmdebstrap is not installed and no base image is cached: as root, "
                "`bash .ci/install-services` installs it")
    return None


def run(args: Sequence[str], *, timeout: float = 120, check: bool = True,
        what: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check``, a failure raises PodmanError with its output."""
    try:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired as exc:
        raise PodmanError(f"{what or args[0]}: no answer within {timeout:.0f}s: "
                          f"{' '.join(args)}") from exc
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise PodmanError(f"{what or args[0]} failed (exit {result.returncode}): "
                          f"{' '.join(args)}\n{tail}")
    return result


def podman(*args: str, timeout: float = 120, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    return run(["podman", *GLOBAL, *args], timeout=timeout, check=check, what="podman")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One maker at a time across concurrent test runs (the lead's suite and ours)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


BASE_KEY = _key(SUITE, MMDEBSTRAP_OPTIONS)


def _cached_base_tar() -> Path | None:
    path = CACHE / f"base-{SUITE}-{BASE_KEY}.tar"
    return path if path.is_file() else None


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (deb822 or one-line sources), since that is
    the one known to be reachable; DEBIAN_MIRROR overrides it."""
    chosen = os.environ.get("DEBIAN_MIRROR", "")
    if chosen:
        return chosen
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        with contextlib.suppress(OSError):
            for uri in re.findall(r"(?:^URIs:|^deb)\s+(?:\[[^]]*\]\s+)?(\S+)",
                                  source.read_text(), re.M):
                for one in uri.split():
                    if one.rstrip("/").endswith("/debian"):
                        return str(one).rstrip("/")
    return "http://deb.debian.org/debian"


def base_image() -> str:
    """The local stand-in for the Dockerfile's ``FROM`` image, made once and cached."""
    tag = f"{BASE_REPOSITORY}:{SUITE}-{BASE_KEY}"
    with _locked("base"):
        if podman("image", "exists", tag, check=False).returncode == 0:
            return tag
        tar = _cached_base_tar()
        if tar is None:
            tar = CACHE / f"base-{SUITE}-{BASE_KEY}.tar"
            partial = tar.with_suffix(".partial.tar")
            partial.unlink(missing_ok=True)
            began = time.monotonic()
            try:
                run(["mmdebstrap", "--quiet", *MMDEBSTRAP_OPTIONS, SUITE, str(partial),
                     debian_mirror()], timeout=900, what="mmdebstrap (the base image)")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.rename(tar)  # complete or absent: never a half-written cache entry
            sys.stderr.write(f"\n[measure] base root filesystem made by mmdebstrap in "
                             f"{time.monotonic() - began:.0f}s ({tar})\n")
        podman("import", "--change", 'CMD ["/bin/bash"]', str(tar), tag, timeout=300)
        # A changed recipe leaves the old base behind: the cache keeps only the current one.
        for old in CACHE.glob(f"base-{SUITE}-*.tar"):
            if old != tar:
                old.unlink(missing_ok=True)
        for line in podman("images", "--format", "{{.Repository}}:{{.Tag}}",
                           BASE_REPOSITORY, check=False).stdout.split():
            if line != tag:
                podman("rmi", line, check=False)
        return tag


def _dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    runtime: list[str] = project["project"]["dependencies"]
    backend: list[str] = project["build-system"]["requires"]
    return [*runtime, *backend, "wheel"]


def wheelhouse() -> Path:
    """Wheels of the project's runtime dependencies and of its build backend, for
    CPython 3.11 on this platform (the image's Python), cached by the requirement list.

    ``pip download --only-binary`` with ``--python-version`` picks the image's wheels even
    when the tests run on another Python; every dependency ships wheels."""
    requirements = _dependencies()
    path = CACHE / f"wheels-cp311-{_key(requirements)}"
    with _locked("wheels"):
        if path.is_dir():
            return path
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", "3.11", "--dest", str(partial), *requirements],
            timeout=600, what="pip download (the wheelhouse; needs the package index once)")
        partial.rename(path)
        # Changed dependencies leave the old wheelhouse behind: keep only the current one.
        for old in CACHE.glob("wheels-cp311-*"):
            if old != path and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return path


def build(containerfile: Path, tag: str, *, args: Sequence[str] = (),
          base: str | None = None) -> None:
    """``podman build`` of the repository root (without network, without cache layers:
    a run removes its images and leaves nothing behind), one build at a time.

    A build cut short (a test timeout kills podman) leaves buildah's working container,
    mounted; builds hold a lock, so any working container of our base found around one
    is such a leftover, and is removed."""
    base = base or base_image()
    with _locked("build"):
        _remove_working_containers(base)
        try:
            podman("build", "--runtime", "runc", *LIMITS, "--pull=never", "--network", "none",
                   "--layers=false", "--from", base, "--label", f"{RUN_LABEL}={RUN_ID}",
                   *args, "--file", str(containerfile), "--tag", tag, str(REPO), timeout=600)
        finally:
            _remove_working_containers(base)


def _remove_working_containers(base: str) -> None:
    out = podman("ps", "--all", "--external", "--filter", f"ancestor={base}",
                 "--format", "{{.ID}} {{.Names}}", check=False).stdout
    for line in out.splitlines():
        ident, _, name = line.partition(" ")
        if "working-container" in name:
            podman("rm", "--force", ident, check=False)


def build_app_image(workdir: Path) -> str:
    """``podman build -f Dockerfile.example`` of this tree; the tag is unique to this run.
    The wheelhouse and a no-index pip config are mounted for its RUN steps (their empty
    mount points stay in the image). Returns the tag."""
    base = base_image()  # made (or imported) first: not part of the build's time
    # A run killed before its teardown leaves its image behind; no run lasts 4 hours (CI
    # has 90 minutes), so an older one is garbage, while a concurrent run's is kept.
    stale = podman("images", "--filter", f"reference={APP_REPOSITORY}", "--filter",
                   "until=4h", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout
    for old in stale.split():
        podman("rmi", old, check=False)
    wheels = wheelhouse()
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n")
    tag = f"{APP_REPOSITORY}:run-{RUN_ID}"
    began = time.monotonic()
    build(REPO / "Dockerfile.example", tag, base=base, args=(
        "--volume", f"{wheels}:/wheels:ro", "--volume", f"{pip_conf}:/etc/pip.conf:ro"))
    sys.stderr.write(f"\n[measure] podman build of Dockerfile.example in "
                     f"{time.monotonic() - began:.1f}s\n")
    return tag


def remove_image(tag: str) -> None:
    podman("rmi", "--force", tag, check=False)


@dataclass
class Container:
    """One detached container of the app image; ``remove()`` gets rid of it."""

    name: str
    image: str
    journal: Path
    started: float = field(default_factory=time.monotonic)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.journal / "events"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in lines if kind is None or e["event"] == kind]

    def state(self) -> dict[str, Any]:
        out = podman("inspect", "--format", "{{json .State}}", self.name).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def running(self) -> bool:
        return bool(self.state()["Running"])

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """Until the app journals ``count`` events of ``kind``; a container that exits
        first fails at once, with its log."""
        def seen() -> bool:
            if len(self.events(kind)) >= count:
                return True
            if not self.running():
                raise AssertionError(f"container {self.name} exited before {count} {kind!r} "
                                     f"event(s); its log:\n{self.logs()}")
            return False

        wait_until(seen, timeout=timeout, what=f"{count} {kind!r} event(s) from the app in "
                   f"container {self.name}")
        return self.events(kind)

    def wait_exit(self, timeout: float = 60) -> int:
        wait_until(lambda: not self.running(), timeout=timeout,
                   what=f"container {self.name} to exit")
        return int(self.state()["ExitCode"])

    def top(self) -> list[dict[str, str]]:
        """The container's processes as podman reads them from its /proc (no ps needed in
        the image): pid and ppid as the container sees them, user, state, command."""
        out = podman("top", self.name, "pid", "ppid", "user", "state", "comm").stdout
        rows = [line.split(None, 4) for line in out.splitlines()[1:] if line.strip()]
        return [dict(zip(("pid", "ppid", "user", "state", "comm"), row, strict=True))
                for row in rows]

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def env_file(path: Path, env: dict[str, str]) -> Path:
    """The variables as an ``--env-file`` (read as is: no quoting, no expansion), so that
    no token or password is on a command line, in ``ps`` or in a PodmanError."""
    for key, value in env.items():
        if "\n" in value or "=" in key:
            raise ValueError(f"{key}: an env-file holds one KEY=VALUE per line")
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    path.chmod(0o600)
    return path


def start(image: str, journal: Path, *, env: dict[str, str] | None = None,
          volumes: Sequence[str] = (), command: Sequence[str] = (),
          extra: Sequence[str] = ()) -> Container:
    """``podman run -d`` of the app image on the host network; the journal folder is
    mounted at /journal, writable by the app's user whatever uid it has."""
    journal.mkdir(parents=True, exist_ok=True)
    journal.chmod(0o777)
    name = f"entrypoint-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    argv = ["run", "--detach", "--name", name, "--network", "host", *LIMITS,
            "--log-driver", "k8s-file", "--label", f"{RUN_LABEL}={RUN_ID}",
            "--volume", f"{journal}:/journal"]
    for volume in volumes:
        argv += ["--volume", volume]
    if env:
        argv += ["--env-file", str(env_file(journal.parent / f"{name}.env", env))]
    container = Container(name, image, journal)
    try:
        podman(*argv, *extra, image, *command, timeout=60)
    except BaseException:
        container.remove()
        raise
    return container


def leftovers() -> list[str]:
    """Containers of this run still present (a test must remove what it starts)."""
    out = podman("ps", "--all", "--filter", f"label={RUN_LABEL}={RUN_ID}",
                 "--format", "{{.Names}}", check=False).stdout
    return out.split()
