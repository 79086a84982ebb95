"""examples/compose/: the compose file, and bootstrap.sh run for real by ``sh``.

No Docker engine here, so bootstrap.sh runs with a stand-in ``vault`` CLI first on PATH
(this module, run as a script) against the real Vault server; the stand-in was written
when no ``vault`` binary could be had, and is not yet replaced by the real binary's CLI
(tests/realservers/get-binaries.sh builds it now). The stand-in checks every
command it is given against :data:`CLI`, a table of the documented Vault CLI for the
subcommands we use, and then either answers as the CLI would without a server
(``record``) or turns the command into the HTTP call the real CLI makes and sends it to
a Vault-compatible server (``http``). The shell does the quoting and expansion, so what
is checked is what the script really runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "examples" / "compose"
BOOTSTRAP = COMPOSE / "bootstrap.sh"


# -- the documented CLI -------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """One ``vault`` subcommand: its flags and its positional arguments.

    ``positional`` is (min, max) arguments after the flags; ``pairs`` means K=V data
    arguments follow the positional ones (at least one when ``pairs_required``).
    """

    flags: frozenset[str]
    positional: tuple[int, int]
    pairs: bool = False
    pairs_required: bool = False
    repeatable: frozenset[str] = frozenset()


def _flags(*names: str) -> frozenset[str]:
    return frozenset(names)


OUTPUT = ("-format", "-field")
# From `vault <command> -h` (Vault 1.17): only the subcommands our docs and scripts use.
CLI: dict[tuple[str, ...], Command] = {
    ("status",): Command(_flags("-format"), (0, 0)),
    ("kv", "put"): Command(_flags("-mount", "-cas", *OUTPUT), (1, 1), pairs=True,
                           pairs_required=True),
    ("kv", "get"): Command(_flags("-mount", "-version", *OUTPUT), (1, 1)),
    ("read",): Command(_flags(*OUTPUT), (1, 1), pairs=True),
    ("list",): Command(_flags("-format", "-detailed"), (1, 1)),
    ("write",): Command(_flags("-force", "-f", *OUTPUT), (1, 1), pairs=True,
                        pairs_required=True),
    ("secrets", "enable"): Command(
        _flags("-path", "-description", "-version", "-default-lease-ttl",
               "-max-lease-ttl", "-plugin-name", "-local", "-seal-wrap"), (1, 1)),
    ("secrets", "list"): Command(_flags("-format", "-detailed"), (0, 0)),
    ("auth", "enable"): Command(_flags("-path", "-description", "-default-lease-ttl",
                                       "-max-lease-ttl", "-local"), (1, 1)),
    ("policy", "write"): Command(_flags("-format"), (2, 2)),
    ("token", "create"): Command(
        _flags("-policy", "-period", "-ttl", "-explicit-max-ttl", "-display-name",
               "-orphan", "-renewable", "-no-default-policy", "-use-limit", "-role",
               "-type", "-metadata", "-wrap-ttl", *OUTPUT), (0, 0),
        repeatable=_flags("-policy", "-metadata")),
    ("lease", "revoke"): Command(_flags("-prefix", "-force", "-sync"), (1, 1)),
}
# Data keys a write needs, by path (from the API docs of each endpoint).
REQUIRED_KEYS: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (re.compile(r"database/config/[^/]+"), _flags("plugin_name", "connection_url")),
    (re.compile(r"database/roles/[^/]+"), _flags("db_name", "creation_statements")),
    (re.compile(r"auth/[^/]+/role/[^/]+"), _flags("auth_type")),
]
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "auth_type": _flags("iam", "ec2"),
    "plugin_name": _flags("postgresql-database-plugin", "mysql-database-plugin"),
}


@dataclass
class Parsed:
    words: tuple[str, ...]
    flags: dict[str, list[str]] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    pairs: dict[str, str] = field(default_factory=dict)


class CliError(ValueError):
    pass


def parse_cli(argv: list[str]) -> Parsed:
    """Check ``vault ARGV`` against :data:`CLI` as the CLI's own parser would."""
    for size in (2, 1):
        words = tuple(argv[:size])
        if words in CLI:
            break
    else:
        raise CliError(f"unknown or unsupported vault subcommand: {' '.join(argv[:2])}")
    spec = CLI[words]
    parsed = Parsed(words)
    rest = argv[len(words):]
    while rest and rest[0].startswith("-") and rest[0] != "-":
        name, _, value = rest.pop(0).partition("=")
        name = "-" + name.lstrip("-")
        if name not in spec.flags:
            raise CliError(f"vault {' '.join(words)}: unknown flag {name}")
        if name in parsed.flags and name not in spec.repeatable:
            raise CliError(f"vault {' '.join(words)}: {name} given twice")
        parsed.flags.setdefault(name, []).append(value)
    low, high = spec.positional
    while rest and len(parsed.args) < high and not (spec.pairs and "=" in rest[0]):
        parsed.args.append(rest.pop(0))
    if len(parsed.args) < low:
        raise CliError(f"vault {' '.join(words)}: expected {low} argument(s), "
                       f"got {len(parsed.args)}")
    for item in rest:
        if item.startswith("-") and item != "-":
            raise CliError(f"vault {' '.join(words)}: flag {item} after the arguments "
                           "(the Vault CLI takes flags first)")
        key, eq, value = item.partition("=")
        if not (spec.pairs and eq and key):
            raise CliError(f"vault {' '.join(words)}: unexpected argument {item!r}")
        parsed.pairs[key] = value
    # -force/-f: "Allow the operation to continue with no key=value pairs" (vault write -h),
    # as for database/rotate-role/NAME and database/rotate-root/NAME.
    if spec.pairs_required and not parsed.pairs and not {"-f", "-force"} & set(parsed.flags):
        raise CliError(f"vault {' '.join(words)}: expected K=V data")
    if words == ("write",):
        for pattern, keys in REQUIRED_KEYS:
            if pattern.fullmatch(parsed.args[0]):
                missing = sorted(keys - set(parsed.pairs))
                if missing:
                    raise CliError(f"vault write {parsed.args[0]}: missing {', '.join(missing)}")
    for key, allowed in ALLOWED_VALUES.items():
        if key in parsed.pairs and parsed.pairs[key] not in allowed:
            raise CliError(f"{key}={parsed.pairs[key]}: expected one of {sorted(allowed)}")
    return parsed


def test_the_cli_table_refuses_what_the_cli_refuses() -> None:
    ok = parse_cli(["write", "database/roles/app", "db_name=app", "creation_statements=x"])
    assert ok.args == ["database/roles/app"] and ok.pairs["db_name"] == "app"
    bad = [
        ["secrets", "enable"],                                  # no engine type
        ["kv", "put", "secret/app/db"],                         # no data
        ["write", "database/roles/app", "db_name=app"],         # creation_statements
        ["kv", "put", "secret/x", "a=b", "-mount=secret"],      # flag after the args
        ["token", "create", "-period=1h", "-period=2h"],        # not repeatable
        ["secrets", "enable", "-paht=x", "database"],           # typo
        ["write", "auth/aws/role/app", "auth_type=iAm"],        # bad value
        ["kv", "putt", "secret/x", "a=b"],                      # no such subcommand
    ]
    for argv in bad:
        with pytest.raises(CliError):
            parse_cli(argv)


# -- the stand-in `vault` -----------------------------------------------------------------

def _http(method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
    import requests

    response = requests.request(
        method, os.environ["VAULT_ADDR"].rstrip("/") + "/v1/" + path.lstrip("/"),
        json=body, headers={"X-Vault-Token": os.environ.get("VAULT_TOKEN", "")}, timeout=30)
    if response.status_code >= 400:
        try:
            errors = response.json().get("errors")
        except ValueError:
            errors = [response.text]
        raise CliError(f"Error making API request.\n\nURL: {method} {response.url}\n"
                       f"Code: {response.status_code}. Errors:\n\n* {errors}")
    return response.json() if response.content else None


def _data_value(text: str) -> str:
    if text.startswith("@"):
        return Path(text[1:]).read_text(encoding="utf-8")
    return text


def _mount_of(path: str) -> tuple[str, int]:
    info = _http("GET", f"sys/internal/ui/mounts/{path}")["data"]
    version = str((info.get("options") or {}).get("version") or "1")
    return str(info["path"]), 2 if version == "2" else 1


def run_http(p: Parsed) -> str:
    """What the real CLI sends for ``p`` (see `vault <cmd> -output-curl-string`)."""
    if p.words == ("kv", "put"):
        mount, version = _mount_of(p.args[0])
        rest = p.args[0][len(mount):]
        data = {k: _data_value(v) for k, v in p.pairs.items()}
        if version == 2:
            _http("POST", f"{mount}data/{rest}", {"data": data})
        else:
            _http("POST", p.args[0], data)
        return ""
    if p.words == ("write",):
        return json.dumps(_http("POST", p.args[0],
                                {k: _data_value(v) for k, v in p.pairs.items()}))
    if p.words == ("read",):
        return json.dumps(_http("GET", p.args[0]))
    if p.words == ("secrets", "enable"):
        kind = p.args[0]
        path = (p.flags.get("-path") or [kind])[0].strip("/")
        body: dict[str, Any] = {"type": "kv", "options": {"version": "2"}} \
            if kind == "kv-v2" else {"type": kind}
        _http("POST", f"sys/mounts/{path}", body)
        return ""
    if p.words == ("secrets", "list"):
        return json.dumps(_http("GET", "sys/mounts").get("data") or {})
    if p.words == ("auth", "enable"):
        path = (p.flags.get("-path") or [p.args[0]])[0].strip("/")
        _http("POST", f"sys/auth/{path}", {"type": p.args[0]})
        return ""
    if p.words == ("policy", "write"):
        _http("PUT", f"sys/policies/acl/{p.args[0]}", {"policy": _data_value("@" + p.args[1])})
        return ""
    if p.words == ("token", "create"):
        body = {"policies": p.flags.get("-policy", [])}
        for flag in ("-period", "-ttl", "-explicit-max-ttl"):
            if flag in p.flags:
                body[flag.strip("-").replace("-", "_")] = p.flags[flag][0]
        auth = _http("POST", "auth/token/create", body)["auth"]
        return str(auth["client_token"]) if p.flags.get("-field") == ["token"] \
            else json.dumps(auth)
    raise CliError(f"the stand-in cannot send vault {' '.join(p.words)}")


def run_record(p: Parsed) -> str:
    """Answers of a CLI whose server is empty, for the dry run."""
    if p.words == ("secrets", "list"):
        return json.dumps({"secret/": {"type": "kv"}})
    if p.words == ("token", "create"):
        return "hvs.recorded-token" if p.flags.get("-field") == ["token"] else "{}"
    return ""


def stand_in(argv: list[str]) -> int:
    """The fake ``vault``: check, log, then answer (record) or send (http)."""
    try:
        parsed = parse_cli(argv)
        with open(os.environ["FAKE_VAULT_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps({"argv": argv, "env_token": bool(os.environ.get(
                "VAULT_TOKEN"))}) + "\n")
        answer = (run_http(parsed) if os.environ.get("FAKE_VAULT_MODE") == "http"
                  else run_record(parsed))
    except CliError as exc:
        print(exc, file=sys.stderr)
        return 2
    if answer:
        print(answer)
    return 0


@dataclass
class BootstrapRun:
    result: subprocess.CompletedProcess[str]
    calls: list[list[str]]
    token_file: Path


def run_bootstrap(tmp: Path, env: Mapping[str, str], mode: str) -> BootstrapRun:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "vault"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from tests.e2e.test_userside_compose import stand_in\n"
                    "sys.exit(stand_in(sys.argv[1:]))\n")
    fake.chmod(0o755)
    log = tmp / "calls.jsonl"
    log.write_text("")
    token_file = tmp / "app-token"
    full = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "FAKE_VAULT_LOG": str(log), "FAKE_VAULT_MODE": mode,
            "POLICY_FILE": str(COMPOSE / "app-policy.hcl"), "TOKEN_FILE": str(token_file),
            **env}
    result = subprocess.run(["sh", str(BOOTSTRAP)], env=full, capture_output=True,
                            text=True, timeout=120, check=False)
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    return BootstrapRun(result, calls, token_file)


# -- bootstrap.sh without a server --------------------------------------------------------

def test_every_vault_command_of_bootstrap_is_well_formed(tmp_path: Path) -> None:
    run = run_bootstrap(tmp_path, {"VAULT_ADDR": "http://vault.invalid:8200",
                                   "VAULT_TOKEN": "root", "PGPASSWORD": "pw"}, "record")
    assert run.result.returncode == 0, run.result.stderr
    used = {tuple(parse_cli(c).words) for c in run.calls}
    assert used >= {("kv", "put"), ("secrets", "enable"), ("write",), ("policy", "write"),
                    ("token", "create")}
    writes = {c[1]: parse_cli(c).pairs for c in run.calls if c[0] == "write"}
    assert writes["database/config/app"]["allowed_roles"] == "app"
    assert writes["database/config/app"]["plugin_name"] == "postgresql-database-plugin"
    role = writes["database/roles/app"]
    assert role["db_name"] == "app" and (role["default_ttl"], role["max_ttl"]) == ("1h", "24h")
    assert '"{{name}}"' in role["creation_statements"]
    assert "{{password}}" in role["creation_statements"]
    puts = [parse_cli(c).args[0] for c in run.calls if c[:2] == ["kv", "put"]]
    assert puts == ["secret/app/db", "secret/app/api"]
    assert run.token_file.read_text().strip() == "hvs.recorded-token"
    assert run.token_file.stat().st_mode & 0o077 == 0


def test_bootstrap_stops_at_the_first_failure(tmp_path: Path) -> None:
    run = run_bootstrap(tmp_path, {"VAULT_ADDR": "http://vault.invalid:8200",
                                   "VAULT_TOKEN": "root"}, "record")
    assert run.result.returncode != 0
    assert "PGPASSWORD" in run.result.stderr and run.calls == []


def shell_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of ``markdown`` in sh/bash/console (or no language)."""
    blocks: list[str] = []
    lines: list[str] | None = None
    keep = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if lines is None:
                lines, keep = [], line.strip()[3:] in ("", "sh", "bash", "shell", "console")
            else:
                if keep:
                    blocks.append("\n".join(lines) + "\n")
                lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def test_shell_blocks_pairs_fences() -> None:
    text = "```dockerfile\nCMD x\n```\ntext\n```sh\nvault status\n```\n"
    assert shell_blocks(text) == ["vault status\n"]


def test_every_vault_command_in_the_docs_is_well_formed() -> None:
    """Code blocks of docs/*.md and examples/**/README.md: each `vault ...` line."""
    found = 0
    for doc in [*(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.md")]:
        text = doc.read_text(encoding="utf-8")
        for block in shell_blocks(text):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.strip().removeprefix("$ ")
                if not line.startswith("vault "):
                    continue
                words = shlex.split(line, comments=True)
                cut = next((i for i, w in enumerate(words) if w in ("|", ">", "&&", "||")),
                           len(words))
                try:
                    parse_cli(words[1:cut])
                except CliError as exc:
                    pytest.fail(f"{doc.relative_to(ROOT)}: {line}: {exc}")
                found += 1
    assert found >= 5, "the docs should show the Vault setup (docs/aws-iam.md, ...)"


# -- docker-compose.yml -------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def interpolated(value: str) -> str:
    """A compose value as the container sees it: ``$$`` is one ``$``; a lone ``${`` would
    be compose's own variable, which this file must not use."""
    lone = re.search(r"(?<!\$)\$\{", value.replace("$$", ""))
    assert lone is None, f"unescaped ${{ in {value!r}: compose would interpolate it"
    return value.replace("$$", "$")


def test_compose_has_vault_postgres_bootstrap_and_the_app(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"vault", "postgres", "bootstrap", "app"}
    vault = services["vault"]
    assert vault["image"].startswith("hashicorp/vault:")
    assert vault["command"][-2:] == ["server", "-dev"]
    assert vault["environment"]["VAULT_DEV_ROOT_TOKEN_ID"]
    assert vault["environment"]["VAULT_DEV_LISTEN_ADDRESS"].startswith("0.0.0.0:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "app"
    boot = services["bootstrap"]
    assert boot["image"] == vault["image"]
    assert boot["environment"]["VAULT_TOKEN"] == vault["environment"]["VAULT_DEV_ROOT_TOKEN_ID"]
    assert boot["environment"]["PGPASSWORD"] == \
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for volume in boot["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (COMPOSE / source).is_file(), source
    assert boot["depends_on"]["vault"]["condition"] == "service_healthy"
    assert boot["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_postgres_healthcheck_asks_over_tcp(compose: dict[str, Any]) -> None:
    """The image's first start serves a temporary server on the socket only
    (docker-library/postgres#880): only a TCP check says when Vault can connect."""
    test = compose["services"]["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"], test
    assert "-h" in test and test[test.index("-h") + 1] == "127.0.0.1", test


def test_the_by_hand_bootstrap_does_not_send_vault_to_its_own_loopback() -> None:
    """PGHOST goes into Vault's connection_url: Vault dials it from its own container,
    where 127.0.0.1 is Vault itself, whatever address the user's shell uses for Vault."""
    for path in (COMPOSE / "README.md", BOOTSTRAP):
        text = path.read_text(encoding="utf-8")
        hosts = re.findall(r"\bPGHOST=\"?([^\s\"]+)", text)
        assert hosts, f"{path.name}: no PGHOST shown"
        for host in hosts:
            assert host not in ("127.0.0.1", "localhost", "::1"), f"{path.name}: PGHOST={host}"
    assert "PGHOST=postgres" in (COMPOSE / "README.md").read_text(encoding="utf-8")


def test_the_app_runs_the_example_image_under_the_entrypoint(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    build = app["build"]
    dockerfile = (COMPOSE / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == ROOT / "Dockerfile.example"
    assert app["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    mounted = {v.split(":")[1]: v.split(":")[0] for v in app["volumes"]}
    assert app["command"][-1] in mounted and (COMPOSE / mounted[app["command"][-1]]).is_file()
    # The token file bootstrap writes is the one the app's entrypoint reads.
    env = {k: interpolated(str(v)) for k, v in app["environment"].items()}
    token_dir = str(Path(env["ENTRYPOINT_VAULT_TOKEN_FILE"]).parent)
    assert token_dir in mounted
    boot_env = compose["services"]["bootstrap"]["environment"]
    assert env["ENTRYPOINT_VAULT_TOKEN_FILE"] == boot_env["TOKEN_FILE"]
    assert env["VAULT_ADDR"] == boot_env["VAULT_ADDR"]
    assert "VAULT_TOKEN" not in env, "the app uses its own token, not the root token"


def test_the_app_has_the_same_references_as_production(compose: dict[str, Any]) -> None:
    from entrypoint.config.settings import BY_VARIABLE
    from entrypoint.plan import refs

    env = {k: interpolated(str(v)) for k, v in compose["services"]["app"]["environment"].items()}
    production = (ROOT / "Dockerfile.example").read_text(encoding="utf-8")
    references = 0
    for name, value in env.items():
        if name.startswith("ENTRYPOINT_"):
            assert name in BY_VARIABLE, f"{name} is not a setting"
            continue
        parts = refs.parse(value, where=f"variable {name}")
        if refs.references(parts):
            references += 1
            assert f"#   {name}={value}\n" in production, (
                f"{name} differs from the production example in Dockerfile.example")
    assert references >= 4
    assert "${vault:database/creds/app#username}" in env["DATABASE_URL"]


# -- bootstrap.sh against the Vault-compatible test server --------------------------------

@pytest.fixture
def bootstrapped(tmp_path: Path, vault_server: Any, postgres: Any) -> Iterator[BootstrapRun]:
    run = run_bootstrap(tmp_path, {
        "VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": vault_server.root_token,
        "PGHOST": postgres.host, "PGPORT": str(postgres.port), "PGDATABASE": "postgres",
        "PGUSER": postgres.superuser, "PGPASSWORD": postgres.superuser_password,
    }, "http")
    yield run


def test_bootstrap_succeeds_against_the_test_server(bootstrapped: BootstrapRun,
                                                    vault_server: Any, postgres: Any) -> None:
    import psycopg
    import requests

    assert bootstrapped.result.returncode == 0, bootstrapped.result.stderr
    token = bootstrapped.token_file.read_text().strip()
    assert token and token != vault_server.root_token

    def read(path: str) -> Any:
        response = requests.get(f"{vault_server.addr}/v1/{path}",
                                headers={"X-Vault-Token": token}, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    assert read("secret/data/app/api")["data"]["data"]["token"] == "dev-api-token"
    assert read("secret/data/app/db")["data"]["data"]["port"] == str(postgres.port)
    creds = read("database/creds/app")
    assert creds["lease_id"].startswith("database/creds/app/")
    assert creds["lease_duration"] == 3600
    with psycopg.connect(postgres.dsn(creds["data"]["username"], creds["data"]["password"])) \
            as conn:
        assert conn.execute("select current_user").fetchone() == (creds["data"]["username"],)


def test_bootstrap_runs_twice(bootstrapped: BootstrapRun, tmp_path: Path,
                              vault_server: Any, postgres: Any) -> None:
    """`docker compose up` again with Vault still running: the script must not fail."""
    assert bootstrapped.result.returncode == 0, bootstrapped.result.stderr
    second = tmp_path / "again"
    second.mkdir()
    again = run_bootstrap(second, {
        "VAULT_ADDR": vault_server.addr, "VAULT_TOKEN": vault_server.root_token,
        "PGHOST": postgres.host, "PGPORT": str(postgres.port), "PGDATABASE": "postgres",
        "PGUSER": postgres.superuser, "PGPASSWORD": postgres.superuser_password,
    }, "http")
    assert again.result.returncode == 0, again.result.stderr
    assert ["secrets", "enable", "database"] not in again.calls


def test_the_compose_app_runs_on_the_bootstrapped_vault_and_rotates(
        bootstrapped: BootstrapRun, compose: dict[str, Any], vault_server: Any, postgres: Any,
        tmp_path: Path) -> None:
    """The app service, without Docker: its environment from docker-compose.yml, its
    token from bootstrap.sh, then `entrypoint rotate` as in the compose file's header."""
    import uuid

    import psycopg

    from tests.helpers.cli import run_cli, start_cli, wait_until

    assert bootstrapped.result.returncode == 0, bootstrapped.result.stderr
    app = compose["services"]["app"]
    env = {k: interpolated(str(v)) for k, v in app["environment"].items()}
    env.update(VAULT_ADDR=vault_server.addr,
               ENTRYPOINT_VAULT_TOKEN_FILE=str(bootstrapped.token_file),
               ENTRYPOINT_CONTROL_SOCKET=f"@entrypoint-test-{uuid.uuid4().hex}",
               ENTRYPOINT_KILL_TIMEOUT="5s", ENTRYPOINT_WAIT_MIN="100ms",
               ENTRYPOINT_WAIT_MAX="500ms")
    out, err = tmp_path / "app.out", tmp_path / "entrypoint.err"

    def users() -> list[str]:
        return re.findall(r"database user: (\S+)", out.read_text())

    def role_exists(name: str) -> bool:
        with psycopg.connect(postgres.dsn()) as conn:
            return conn.execute("select 1 from pg_roles where rolname = %s",
                                (name,)).fetchone() is not None

    with out.open("w") as stdout, err.open("w") as stderr:
        process = start_cli(["--", sys.executable, str(COMPOSE / "app.py")], env,
                            stdout=stdout, stderr=stderr, cwd=ROOT)
    try:
        wait_until(lambda: users(), timeout=30, what="the app's first start")
        first = users()[0]
        assert first.startswith("v-") and role_exists(first)
        text = out.read_text()
        assert "bootstrap variables visible to the app: none" in text
        assert "DATABASE_URL  (not set)" not in text
        rotate = run_cli(["rotate"],
                         {"ENTRYPOINT_CONTROL_SOCKET": env["ENTRYPOINT_CONTROL_SOCKET"]},
                         timeout=30, cwd=ROOT)
        assert rotate.returncode == 0, rotate.stderr
        wait_until(lambda: len(users()) >= 2, timeout=30, what="a restart on new credentials")
        second = users()[1]
        assert second != first and role_exists(second)
        wait_until(lambda: not role_exists(first), timeout=30,
                   what="the old database user revoked once the new app runs")
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    assert code == 0, err.read_text()
    assert not role_exists(second), "revoke_on_exit: the last lease is revoked at shutdown"
    log = err.read_text()
    assert "dev-api-token" not in log and "dev-only" not in log
