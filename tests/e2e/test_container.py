"""Dockerfile.example built and run for real, black-box, with rootful podman and runc
(issue 18). How the image is made without a registry: tests/helpers/podman.py.

What a user of the image relies on, each seen from outside the container: the sample
app's values from a mounted folder; `podman stop` reaching the app as SIGTERM and the
container exiting with the app's code; `podman kill -s HUP` reaching the app; orphans
reaped by the entrypoint as PID 1; `ENTRYPOINT_USER=app` dropping privileges; the
subcommands through `--entrypoint entrypoint`; and, against the real Vault on the host
network, database credentials replaced with the app restarted on them.

Marked ``podman``; skipped with the reason where podman, runc or root is missing, unless
REQUIRE_PODMAN=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import podman as pm
from tests.helpers.cli import wait_until
from tests.helpers.vault_rotation import APP_POLICY, pg_roles
from tests.realservers import binaries

# A cold first run makes the base image (mmdebstrap, ~2 min) in the first test's setup;
# every wait inside a test has its own deadline, so this only bounds that setup.
pytestmark = [pytest.mark.podman, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "examples" / "compose"
PROBE = f"{REPO / 'tests/helpers/container_probe.py'}:/probe/container_probe.py:ro"
PROBE_CMD = ["python", "/probe/container_probe.py", "/journal"]
APP_UID = 10001  # Dockerfile.example's `useradd --uid 10001 ... app`


@pytest.fixture(scope="session")
def app_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Dockerfile.example built once per run; the image is removed at the end."""
    reason = pm.missing()
    if reason:
        if os.environ.get("REQUIRE_PODMAN") == "1":
            pytest.fail(f"REQUIRE_PODMAN=1 but {reason}")
        pytest.skip(reason)
    tag = pm.build_app_image(tmp_path_factory.mktemp("podman-build"))
    try:
        yield tag
    finally:
        pm.remove_image(tag)


@pytest.fixture
def containers() -> Iterator[list[pm.Container]]:
    """Containers a test started; removed at its end, passed or failed."""
    started: list[pm.Container] = []
    yield started
    for container in started:
        container.remove()
    assert pm.leftovers() == [], "a container of this run outlived its test"


def probe(app_image: str, tmp_path: Path, containers: list[pm.Container], *args: str,
          env: dict[str, str] | None = None, volumes: tuple[str, ...] = ()) -> pm.Container:
    container = pm.start(app_image, tmp_path / "journal", env=env,
                         volumes=(PROBE, *volumes), command=[*PROBE_CMD, *args])
    containers.append(container)
    return container


def test_the_sample_app_gets_its_values_from_a_mounted_folder(app_image: str) -> None:
    """The README's `docker run` of the image: the default CMD, a local folder mounted."""
    name = f"entrypoint-test-{pm.RUN_ID}-{uuid.uuid4().hex[:6]}"
    try:
        result = pm.podman(
            "run", "--name", name, "--network", "host", *pm.LIMITS,
            "--volume", f"{REPO / 'examples/dev-secrets'}:/dev-secrets:ro",
            "--env", "ENTRYPOINT_LOCAL_SECRETS=/dev-secrets",
            "--env", "API_TOKEN=vault:secret/app/api#token",
            "--env", "DB_PASSWORD=vault:database/creds/app#password",
            "--env", "DATABASE_URL=postgresql://${vault:database/creds/app#username}:"
                     "${vault:database/creds/app#password}@${vault:secret/app/db#host}/app",
            app_image, timeout=60, check=False)
        exit_code = int(pm.podman("inspect", "--format", "{{.State.ExitCode}}",
                                  name).stdout)
    finally:
        pm.podman("rm", "--force", name, check=False)
    out, err = result.stdout, result.stderr
    assert result.returncode == exit_code == 0, out + err
    assert "API_TOKEN      15 characters, starts 'lo'" in out  # local-api-token
    assert "DB_PASSWORD    22 characters, starts 'lo'" in out  # local-dynamic-password
    assert "DATABASE_URL   (not set)" not in out and "DB_USER        (not set)" in out
    assert "bootstrap variables visible to the app: none" in out
    assert "answered by local secrets directory /dev-secrets" in err
    assert "user=app (uid=10001 gid=10001)" in err
    leaked = [s for s in ("local-api-token", "local-dynamic-password") if s in out + err]
    assert leaked == [], "a value from the secrets folder reached the output"


def test_podman_stop_gives_the_app_sigterm_and_the_container_its_exit_code(
        app_image: str, tmp_path: Path, containers: list[pm.Container]) -> None:
    container = probe(app_image, tmp_path, containers, "--exit-code", "7")
    container.wait_for("start")
    stopped = pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    # 7, not 137: the app got SIGTERM through the entrypoint and exited by itself before
    # podman's SIGKILL, and the entrypoint exited with the app's code.
    assert container.wait_exit() == 7, container.logs()
    assert len(container.events("stop")) == 1
    log = container.logs()
    assert "stopping the child with SIGTERM" in log and "child stopped code=7" in log, log


def test_podman_kill_hup_reaches_the_app(app_image: str, tmp_path: Path,
                                         containers: list[pm.Container]) -> None:
    container = probe(app_image, tmp_path, containers)
    (start,) = container.wait_for("start")
    pm.podman("kill", "--signal", "HUP", container.name)
    container.wait_for("hup")
    pm.podman("kill", "--signal", "HUP", container.name)
    hups = container.wait_for("hup", 2)
    # Forwarded to the same app, which stays up: a reload, not a restart.
    assert {e["pid"] for e in hups} == {start["pid"]}
    assert len(container.events("start")) == 1 and container.running()
    pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert container.wait_exit() == 0, container.logs()


def test_orphans_are_reaped_by_the_entrypoint_as_pid1(
        app_image: str, tmp_path: Path, containers: list[pm.Container]) -> None:
    container = probe(app_image, tmp_path, containers, "--orphans", "5")
    orphans = container.wait_for("orphan", 5)
    assert {e["ppid"] for e in orphans} == {1}, orphans
    pids = {str(e["pid"]) for e in orphans}
    top = container.top()
    assert {row["pid"]: row["comm"] for row in top}["1"] == "entrypoint", top
    assert pids <= {row["pid"] for row in top}
    (container.journal / "release").touch()  # every orphan exits now

    def reaped() -> bool:
        return not pids & {row["pid"] for row in container.top()}

    wait_until(reaped, timeout=20,
               what=f"the 5 orphans reaped by PID 1; still there: {container.top()}")
    assert [row for row in container.top() if row["state"].startswith("Z")] == []
    assert container.running(), container.logs()
    pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert container.wait_exit() == 0, container.logs()


def test_entrypoint_user_app_drops_privileges(app_image: str, tmp_path: Path,
                                              containers: list[pm.Container]) -> None:
    """The image's ENV ENTRYPOINT_USER=app: the entrypoint stays root (it renders files
    for the app and holds the Vault token), the app runs as uid 10001 without root's
    groups and cannot read PID 1's environment."""
    container = probe(app_image, tmp_path, containers, "ENTRYPOINT_USER", "HOME")
    (start,) = container.wait_for("start")
    assert (start["uid"], start["euid"], start["gid"]) == (APP_UID, APP_UID, APP_UID), start
    assert start["groups"] == [APP_UID], start
    assert start["pid1_environ"] == "PermissionError", start
    assert start["env"]["ENTRYPOINT_USER"] is None, "ENTRYPOINT_* must not reach the app"
    users = {row["pid"]: row["user"] for row in container.top()}
    assert users["1"] == "root" and users[str(start["pid"])] == "app", users
    pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert container.wait_exit() == 0, container.logs()


def test_subcommands_run_with_entrypoint_overridden(app_image: str) -> None:
    """ENTRYPOINT ["entrypoint", "--"] makes every argument the app's command; the
    documented way to a subcommand is `--entrypoint entrypoint IMAGE check`."""
    common = ["run", "--rm", "--network", "host", *pm.LIMITS,
              "--volume", f"{REPO / 'examples/dev-secrets'}:/dev-secrets:ro",
              "--env", "ENTRYPOINT_LOCAL_SECRETS=/dev-secrets",
              "--env", "API_TOKEN=vault:secret/app/api#token"]
    checked = pm.podman(*common, "--entrypoint", "entrypoint", app_image, "check",
                        timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "vault:secret/app/api" in checked.stdout and "local-api-token" not in checked.stdout
    as_app = pm.podman(*common, app_image, "check", timeout=60, check=False)
    assert as_app.returncode == 127, as_app.stdout + as_app.stderr
    assert "check: command not found in the app's PATH" in as_app.stderr


def test_the_build_context_holds_only_what_the_dockerfile_copies(
        app_image: str, tmp_path: Path) -> None:
    """.dockerignore, as the builder reads it: `COPY . /ctx` of the repository root, in
    an image of its own (removed), shows what reaches the builder."""
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM base\nCOPY . /ctx\n")  # FROM: replaced by the base
    tag = f"{pm.APP_REPOSITORY}:context-{pm.RUN_ID}"
    try:
        pm.build(containerfile, tag)
        mounted = Path(pm.podman("image", "mount", tag).stdout.strip())
        try:
            found = {str(p.relative_to(mounted / "ctx")) for p in (mounted / "ctx").rglob("*")
                     if p.is_file()}
        finally:
            pm.podman("image", "unmount", tag, check=False)
    finally:
        pm.remove_image(tag)
    expected = {"pyproject.toml", "README.md", "examples/sample_app.py"}
    for folder in ("entrypoint", "templates"):
        expected |= {str(p.relative_to(REPO)) for p in (REPO / folder).rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts
                     and p.suffix not in (".pyc", ".pyo")}
    assert found == expected, (sorted(found - expected), sorted(expected - found))


def test_database_credentials_rotate_in_the_container_against_the_real_vault(
        app_image: str, database: Any, postgres: Any, tmp_path: Path,
        containers: list[pm.Container]) -> None:
    """The real Vault on the host network, its database engine on the real PostgreSQL:
    leases with a 6 s max TTL are replaced before they end, the app restarts on each new
    user, the old user is revoked; `podman exec ... entrypoint rotate` forces one more."""
    database.add_database_role("app", default_ttl=3, max_ttl=6)
    database.set_policy("app", APP_POLICY)
    token_dir = tmp_path / "vault-token"
    token_dir.mkdir()
    token_file = token_dir / "token"
    token_file.write_text(database.create_token(["app"], ttl=3600))
    token_file.chmod(0o600)  # read by the entrypoint as root, never by the app
    container = probe(
        app_image, tmp_path, containers, "DB_USER",
        env={"VAULT_ADDR": database.addr,
             "ENTRYPOINT_VAULT_TOKEN_FILE": "/run/vault-token/token",
             "DB_USER": "vault:database/creds/app#username",
             "DB_PASSWORD": "vault:database/creds/app#password",
             # Seconds, not an hour: see test_rotation_vault.py for why these fractions.
             "ENTRYPOINT_RENEW_FRACTION": "0.3", "ENTRYPOINT_REPLACE_FRACTION": "0.5",
             "ENTRYPOINT_WAIT_MIN": "100ms", "ENTRYPOINT_WAIT_MAX": "500ms",
             "ENTRYPOINT_KILL_TIMEOUT": "5s"},
        volumes=(f"{token_dir}:/run/vault-token:ro",))
    starts = container.wait_for("start", 2, timeout=40)
    users = [e["env"]["DB_USER"] for e in starts]
    assert users[0] != users[1] and all(u.startswith("v-") for u in users), users
    wait_until(lambda: users[0] not in pg_roles(postgres), timeout=30,
               what="the first database user revoked once the app runs on the second")
    before = len(container.events("start"))
    rotated = pm.podman("exec", container.name, "entrypoint", "rotate", timeout=60,
                        check=False)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    starts = container.wait_for("start", before + 1, timeout=30)
    users = [e["env"]["DB_USER"] for e in starts]
    assert len(set(users)) == len(users), users  # every restart on a new user
    pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert container.wait_exit() == 0, container.logs()
    # revoke_on_exit: nothing the container held is left in Vault or PostgreSQL.
    assert database.leases("database/creds/app") == []
    assert not pg_roles(postgres) & set(users)
    log = container.logs()
    assert "rotation: restarting the app" in log
    # A bare bool: pytest's explanation of `x not in log` would print the token itself.
    token_logged = token_file.read_text() in log
    assert not token_logged, "the Vault token reached the container's log"


def compose_value(value: object) -> str:
    """A compose file's value as the container gets it: `$$` is `$`, and `${NAME:-x}`
    (compose's own variables, unset here) is its default."""
    text = re.sub(r"(?<!\$)\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
    return text.replace("$$", "$")


def test_the_compose_services_run_as_containers_against_the_real_vault(
        app_image: str, vault_server: Any, postgres: Any, tmp_path: Path,
        containers: list[pm.Container]) -> None:
    """examples/compose/ service by service, with podman: `bootstrap` runs bootstrap.sh
    with the real Vault CLI (in the base image: no registry for hashicorp/vault), then
    `app` runs the image with the compose file's environment, command and mounts, and
    `podman exec ... entrypoint rotate` as the file's header says. Vault and PostgreSQL
    are the real servers on the host network rather than the compose file's images.

    Not podman-compose: Debian's (1.0.3) reads `depends_on` as an order only and drops
    its conditions (service_healthy, service_completed_successfully), and podman runs
    healthchecks from systemd timers, which these machines lack; bootstrap would race
    Vault and PostgreSQL, and the app would race bootstrap. Nor the hashicorp/vault and
    postgres images: no registry, and imitating their entrypoint scripts would test an
    imitation."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    token_volume = tmp_path / "vault-token"  # the named volume `vault-token`
    token_volume.mkdir()

    def volumes(service: dict[str, Any]) -> list[str]:
        mounts = []
        for volume in service["volumes"]:
            source, target, *mode = volume.split(":")
            host = token_volume if source == "vault-token" else COMPOSE / source
            mounts.append(":".join([str(host), target, *mode]))
        return mounts

    boot = services["bootstrap"]
    boot_env = {k: compose_value(v) for k, v in boot["environment"].items()}
    # Where the services are on this machine; the rest is the compose file's.
    boot_env.update(VAULT_ADDR=vault_server.addr, VAULT_TOKEN=vault_server.root_token,
                    PGHOST=postgres.host, PGPORT=str(postgres.port), PGDATABASE="postgres",
                    PGUSER=postgres.superuser, PGPASSWORD=postgres.superuser_password)
    name = f"entrypoint-test-{pm.RUN_ID}-bootstrap"
    argv = ["run", "--rm", "--name", name, "--network", "host", *pm.LIMITS,
            "--env-file", str(pm.env_file(tmp_path / "bootstrap.env", boot_env)),
            "--volume", f"{binaries.find('vault')}:/usr/local/bin/vault:ro",
            "--entrypoint", json.dumps(boot["entrypoint"])]
    for volume in volumes(boot):
        argv += ["--volume", volume]
    try:
        result = pm.podman(*argv, pm.base_image(), timeout=120, check=False)
    finally:
        pm.podman("rm", "--force", name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bootstrap: done" in result.stdout
    assert (token_volume / "app-token").stat().st_mode & 0o777 == 0o600

    app = services["app"]
    env = {k: compose_value(v) for k, v in app["environment"].items()}
    env["VAULT_ADDR"] = vault_server.addr
    container = pm.start(app_image, tmp_path / "journal", env=env, volumes=volumes(app),
                         command=app["command"])
    containers.append(container)

    def users() -> list[str]:
        return re.findall(r"database user: (\S+)", container.logs())

    def started(count: int) -> bool:
        if not container.running():
            raise AssertionError(f"the app's container exited:\n{container.logs()}")
        return len(users()) >= count

    wait_until(lambda: started(1), timeout=30, what="the compose app's first start")
    log = container.logs()
    assert "bootstrap variables visible to the app: none" in log
    assert "(not set)" not in log, log
    rotated = pm.podman("exec", container.name, "entrypoint", "rotate", timeout=60,
                        check=False)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    wait_until(lambda: started(2), timeout=30, what="a restart on new credentials")
    first, second = users()[:2]
    assert first != second and second in pg_roles(postgres)
    wait_until(lambda: first not in pg_roles(postgres), timeout=30,
               what="the first database user revoked once the app runs on the second")
    pm.podman("stop", "--time", "20", container.name, timeout=60)
    assert container.wait_exit() == 0, container.logs()
    assert vault_server.leases("database/creds/app") == []
    assert not pg_roles(postgres) & {first, second}
