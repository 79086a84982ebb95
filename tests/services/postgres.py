"""A throwaway PostgreSQL cluster for tests: real server, real password authentication.

The cluster lives in a temporary folder, listens on a free loopback port, and asks every
TCP client for a password (scram-sha-256), so that a role Vault creates with a password
must really log in with it. Durability is switched off because the data dies with the test
run and start-up time is what matters.

initdb and postgres refuse to run as root. When the tests run as root (CI containers), the
folder is given to the `postgres` system user and the binaries run as that user through
subprocess's own user/group switch (no shell, no runuser, no preexec hook).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.services.ports import LOOPBACK, Service, free_port, stop_process

SERVICE_USER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
BIND_ATTEMPTS = 5

# Settings for speed over safety; the cluster is thrown away after the run.
FAST_SETTINGS = {
    "listen_addresses": f"'{LOOPBACK}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'16MB'",
    "max_connections": "100",
    "password_encryption": "'scram-sha-256'",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


class PostgresError(RuntimeError):
    """The cluster could not be created or started."""


def find_bindir(debian_root: str = "/usr/lib/postgresql") -> Path:
    """The newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin, else PATH."""
    candidates = [
        Path(p)
        for p in glob.glob(f"{glob.escape(debian_root)}/*/bin")
        if Path(p, "initdb").exists()
    ]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    if candidates:
        return max(candidates, key=version)
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb and no "
        "initdb on PATH); as root, run .ci/install-services"
    )


class PostgresCluster(Service):
    """A PostgreSQL server of our own; use as a context manager or call start()/stop()."""

    def __init__(self, superuser: str = "postgres", superuser_password: str | None = None) -> None:
        self.host: str = LOOPBACK
        self.port: int = 0
        self.superuser: str = superuser
        self.superuser_password: str = superuser_password or secrets.token_urlsafe(18)
        self._bindir = find_bindir()
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = self._service_account()

    # -- public API ------------------------------------------------------------------------

    def dsn(
        self, user: str | None = None, password: str | None = None, dbname: str = "postgres"
    ) -> str:
        """A libpq URI; with no user, the superuser and its password."""
        if user is None:
            user = self.superuser
            if password is None:
                password = self.superuser_password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def start(self) -> None:
        if self._process is not None:
            return
        self._root = Path(tempfile.mkdtemp(prefix="entrypoint-pg-"))
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        # SIGINT is PostgreSQL's "fast shutdown": drop clients, checkpoint, exit.
        stop_process(process, signal.SIGINT, STOP_TIMEOUT)
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def log_text(self) -> str:
        """The server log so far (for failure messages)."""
        if self._root is None:
            return ""
        try:
            return (self._root / "server.log").read_text(errors="replace")
        except OSError:
            return ""


    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _service_account() -> pwd.struct_passwd | None:
        """The account the server runs as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PostgresError(
                f"running as root but there is no '{SERVICE_USER}' system user to run "
                "PostgreSQL as; run .ci/install-services"
            ) from None

    def _give(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _popen_kwargs(self) -> dict[str, object]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        if self._run_as is None:
            return {"env": {**env, "HOME": os.environ.get("HOME", "/")}}
        return {
            "env": {**env, "HOME": self._run_as.pw_dir, "USER": SERVICE_USER},
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
        }

    def _initdb(self) -> None:
        assert self._root is not None
        root = self._root
        # mkdtemp made it 0700: only the service user must get in. /tmp itself is world-
        # searchable, so nothing above it stands in the way.
        self._give(root)
        pwfile = root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        self._give(pwfile)
        result = subprocess.run(
            [
                str(self._bindir / "initdb"),
                "--pgdata",
                str(root / "data"),
                "--username",
                self.superuser,
                "--pwfile",
                str(pwfile),
                "--auth-host",
                "scram-sha-256",
                "--auth-local",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            **self._popen_kwargs(),  # type: ignore[arg-type]
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed ({result.returncode}):\n{result.stdout.decode(errors='replace')}"
            )
        settings = {**FAST_SETTINGS, "unix_socket_directories": f"'{root}'"}
        with open(root / "data" / "postgresql.conf", "a") as conf:
            conf.write("\n# entrypoint tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self) -> None:
        assert self._root is not None
        for _ in range(BIND_ATTEMPTS):
            self.port = free_port()
            log = open(self._root / "server.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                self._process = subprocess.Popen(
                    [
                        str(self._bindir / "postgres"),
                        "-D",
                        str(self._root / "data"),
                        "-p",
                        str(self.port),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own session: a Ctrl-C at the terminal reaches pytest, which stops
                    # the cluster in order, instead of killing the server under the tests.
                    start_new_session=True,
                    **self._popen_kwargs(),  # type: ignore[arg-type]
                )
            finally:
                log.close()
            if self._wait_ready():
                return
            self._process = None
            if "could not bind" not in self.log_text and "already in use" not in self.log_text:
                break
        raise PostgresError(f"PostgreSQL did not start; server log:\n{self.log_text}")

    def _wait_ready(self) -> bool:
        """True once the superuser can log in over TCP; False if the server died."""
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresError(f"PostgreSQL not ready after {START_TIMEOUT}s; log:\n{self.log_text}")
