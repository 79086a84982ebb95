"""Benchmarks against a real Vault (`vault server -dev`, tests/realservers) on loopback,
with a throwaway PostgreSQL behind its database engine; one row repeats the start-up
against the project's Vault test server (tests/vaultserver) for comparison.

Requests are counted from Vault's own audit log (accessor in clear, time of each entry).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import Counter
from typing import Any

from benchmarks.common import (
    BenchError,
    Context,
    Row,
    Target,
    entrypoint_argv,
    entrypoint_env,
    interleaved,
    probe_argv,
    stop,
    timed_run,
)
from benchmarks.local import (
    DB_URL,
    KV_REFS,
    add_cpu,
    kv_refs,
    supervised_start,
    write_local_secrets,
)
from tests.helpers.rates import kind_of, per_real_hour

DB_ROLE = "app"
DB_TTL = 3600  # the database role's default_ttl at real settings
DB_MAX_TTL = 86400
TOKEN_TTL = 3600  # the app token's ttl at real settings (renewable)
BULK_PATHS = 100
BULK_KEYS = 10


def vault_server(ctx: Context, standin: bool = False) -> Any:
    """A real Vault (`vault server -dev`, tests/realservers) -- or, with ``standin``, the
    project's Vault test server for comparison -- with 10 KV v2 secrets under secret/app/
    and a database role on a throwaway PostgreSQL."""
    def make() -> Any:
        postgres = ctx.once("postgres", lambda: _postgres(ctx))
        server: Any
        if standin:
            from tests.vaultserver.server import VaultTestServer

            nodelay_like_go(ctx)
            server = VaultTestServer()
        else:
            from tests.helpers.http_servers import self_signed
            from tests.realservers.vault import RealVault

            # Also an https listener (.https_addr), for the rss-iam-tls row.
            server = RealVault(tls=self_signed(ctx.folder("tls")))
        server.start()
        ctx.stack.callback(server.close)  # revokes leases left: no role outlives the run
        server.configure_database(postgres)
        server.add_database_role(DB_ROLE, default_ttl=DB_TTL, max_ttl=DB_MAX_TTL)
        for i in range(KV_REFS):
            server.write_kv("secret", f"app/s{i}", {"value": f"vault-value-{i}"})
        return server

    return ctx.once("vault-standin" if standin else "vault-server", make)


def _postgres(ctx: Context) -> Any:
    from tests.services.postgres import PostgresCluster

    postgres = PostgresCluster()
    postgres.start()
    ctx.stack.callback(postgres.stop)
    return postgres


def nodelay_like_go(ctx: Context) -> None:
    """Answer with TCP_NODELAY, as real Vault does (Go sets it on every TCP connection).

    Python's socketserver leaves Nagle's algorithm on, and the test server writes the
    headers and the body of an answer in two sends: on a keep-alive connection the body
    then waits for the client's delayed ACK, 40 ms per request on Linux loopback. That
    is a property of the test server, not of Vault; measured with it, every Vault row
    would mostly measure delayed ACKs.
    """
    from tests.vaultserver.http import VaultHandler

    if not VaultHandler.disable_nagle_algorithm:
        VaultHandler.disable_nagle_algorithm = True
        ctx.cache["nagle-patched"] = True


def vault_env(server: Any, token: str | None = None, **extra: str) -> dict[str, str]:
    return entrypoint_env({"VAULT_ADDR": server.addr,
                           "VAULT_TOKEN": token or server.root_token, **extra})


def db_role_name(url: str) -> str:
    return url.split("://", 1)[1].split(":", 1)[0]


# -- start to app running ----------------------------------------------------------------------

def vault_start(ctx: Context, standin: bool = False) -> list[Row]:
    """Vault and local-directory starts interleaved (local, Vault, local, Vault, ...), so
    that load from elsewhere on the machine falls on both alike."""
    server = vault_server(ctx, standin)
    folder = ctx.folder("vault-start-standin" if standin else "vault-start")
    env = vault_env(server, **kv_refs(), DATABASE_URL=DB_URL)
    secrets = write_local_secrets(folder / "secrets")
    local_env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), **kv_refs(),
                                "DATABASE_URL": DB_URL})
    names = ["SECRET_0", "DATABASE_URL"]
    runs, base = [], []
    for i in range(ctx.runs + 1):  # the first round warms the caches and is dropped
        base.append(supervised_start(ctx, folder / f"local-{i}", local_env, names, settle=0))
        before = len(server.requests)
        run = supervised_start(ctx, folder / f"vault-{i}", env, names, settle=0)
        if run["env"]["SECRET_0"] != "vault-value-0" or \
                db_role_name(run["env"]["DATABASE_URL"]) in ("", "local-user"):
            raise BenchError(f"the app got unexpected values: {sorted(run['env'])}")
        run["requests"] = Counter(kind_of(r.path) for r in server.requests[before:]
                                  if r.timestamp <= run["running_at"])
        runs.append(run)
    runs, base = runs[1:], base[1:]
    row = Row(
        name="vault start, token, 10 KV + 1 DB" + (" (test server)" if standin else ""),
        unit="ms",
        # The target (Performance, point 4): 250 ms to the app's first line.
        target=Target("max", 250.0, "<= 250 ms"),
        samples=[r["start_ms"] for r in runs],
        baseline_samples=[r["start_ms"] for r in base],
        baseline_what="the same refs from the local directory",
        what="spawn of `entrypoint -- app_probe` (supervise mode) to the probe's "
             "first journal line; token auth (root token), 10 KV v2 refs on 10 paths and "
             "one DATABASE_URL from one database/creds lease (a real PostgreSQL role)")
    row.extra["requests_per_start"] = dict(runs[-1]["requests"])
    add_cpu(row, [r["cpu_ms"] for r in runs], [r["cpu_ms"] for r in base])
    for label, group in (("phases_ms", runs), ("baseline_phases_ms", base)):
        row.extra[label] = {name: statistics.median(r["phases"].get(name, 0.0) for r in group)
                            for name in group[0]["phases"]}
    row.notes.append("phases (median ms): " + ", ".join(
        f"{name} {value:.0f}" for name, value in row.extra["phases_ms"].items()))
    row.notes.append("local phases (median ms): " + ", ".join(
        f"{name} {value:.0f}" for name, value in row.extra["baseline_phases_ms"].items()))
    return [row]


# -- 1,000 references over 100 paths ------------------------------------------------------------

def bulk_refs() -> dict[str, str]:
    return {f"BULK_{p}_{k}": f"vault:secret/bulk/p{p}#k{k}"
            for p in range(BULK_PATHS) for k in range(BULK_KEYS)}


def bulk_data(p: int) -> dict[str, str]:
    return {f"k{k}": f"value-{p}-{k}" for k in range(BULK_KEYS)}


def refs_1000(ctx: Context) -> list[Row]:
    server = vault_server(ctx)
    folder = ctx.folder("refs-1000")

    def seed() -> bool:
        for p in range(BULK_PATHS):
            server.write_kv("secret", f"bulk/p{p}", bulk_data(p))
        return True

    ctx.once("bulk-seeded", seed)
    local = folder / "secrets"
    for p in range(BULK_PATHS):
        file = local / f"secret/bulk/p{p}.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(bulk_data(p)))
    refs = bulk_refs()
    true = shutil.which("true") or "/bin/true"
    argv = entrypoint_argv("--exec", "--", true)
    env = vault_env(server, **refs)
    base_env = entrypoint_env({"ENTRYPOINT_LOCAL_SECRETS": str(local), **refs})
    spans: list[float] = []
    cpu: list[float] = []
    base_cpu: list[float] = []

    def measure() -> float:
        before = len(server.requests)
        elapsed = timed_run(argv, env, 60, folder / "stderr", cpu)
        logged = server.requests[before:]
        reads = [r for r in logged if r.path.startswith("secret/data/bulk/")]
        if len(reads) != BULK_PATHS:
            raise BenchError(f"expected {BULK_PATHS} reads, the server saw {len(reads)}")
        spans.append((max(r.timestamp for r in logged) - min(r.timestamp for r in logged))
                     * 1000)
        return elapsed

    pairs = list(interleaved(
        ctx.runs, measure,
        lambda: timed_run(argv, base_env, 60, folder / "base-stderr", base_cpu)))
    row = Row(
        name="1,000 refs over 100 paths", unit="ms",
        target=Target("max", 1000.0, "<= 1000 ms"),
        samples=[p[0] for p in pairs], baseline_samples=[p[1] for p in pairs],
        baseline_what="the same refs from the local directory",
        what="spawn of `entrypoint --exec -- true` to its exit, 1,000 vault: refs "
             "over 100 KV v2 paths (10 keys each), token auth, vault_concurrency 8 (default): "
             "the whole process, interpreter start and imports included")
    row.extra["server_span_ms_first_to_last_request"] = spans[1:]
    add_cpu(row, cpu[1:], base_cpu[1:])
    row.notes.append(f"server-side span, first to last request: "
                     f"{statistics.median(spans[1:]):.0f} ms (median)")
    return [row]


# -- steady-state requests per hour --------------------------------------------------------------

SCALE = 300  # every interval and TTL divided by this
WINDOW = 30.0  # seconds of steady state counted (= WINDOW * SCALE seconds at real settings)
SETTLE = 2.0  # seconds after the app runs before counting starts
REAL_POLL = 300.0  # poll_interval default (5m)
REAL_LEASE_CHECK = 30.0  # lease_check_interval default


def requests_per_hour(ctx: Context) -> list[Row]:
    """Both configurations at once (default lease checks, and none), ``runs`` processes
    each, told apart in the server's request log by their tokens' accessors."""
    server = vault_server(ctx)
    folder = ctx.folder("requests")
    configs = {"default": REAL_LEASE_CHECK, "no-lease-check": 0.0}
    procs: list[tuple[str, str, Any, Any]] = []  # (config, accessor, process, journal)
    ttl = max(2, round(DB_TTL / SCALE))
    token_ttl = max(2, round(TOKEN_TTL / SCALE))
    server.add_database_role("bench-scaled", default_ttl=ttl, max_ttl=round(DB_MAX_TTL / SCALE))
    server.set_policy("bench-app", {"secret/data/app/*": ["read"],
                                    "database/creds/bench-scaled": ["read"]})
    for i in range(ctx.runs):
        for config, check in configs.items():
            token = server.create_token(["bench-app"], ttl=token_ttl)
            run_folder = folder / f"{config}-{i}"
            run_folder.mkdir()
            journal = ctx.journal(run_folder)
            env = vault_env(server, token, SECRET_0="vault:secret/app/s0#value",
                            DATABASE_URL=DB_URL.replace("creds/app", "creds/bench-scaled"))
            argv = entrypoint_argv(
                "--poll-interval", f"{REAL_POLL / SCALE:g}s",
                "--lease-check-interval", f"{check / SCALE:g}s",
                "--", *probe_argv(journal, "SECRET_0"))
            proc = ctx.popen(argv, env, run_folder / "stderr")
            procs.append((config, server.token_accessor(token), proc, journal))
    for _, _, proc, journal in procs:
        journal.wait("start", alive=lambda p=proc: p.poll() is None)  # type: ignore[misc]
    time.sleep(SETTLE)
    window_start = time.time()
    time.sleep(WINDOW)
    window_end = time.time()
    for _, _, proc, _ in procs:
        if proc.poll() is not None:
            raise BenchError(f"an entrypoint exited during the window: {proc.returncode}")
    logged = [r for r in server.requests if window_start <= r.timestamp < window_end]
    for _, _, proc, _ in procs:
        stop(proc)
    real_hours = WINDOW * SCALE / 3600
    rows = []
    for config, check in configs.items():
        samples, counted, kv_reads = [], [], []
        kinds: list[dict[str, float]] = []
        for name, accessor, _, _ in procs:
            if name != config:
                continue
            mine = [r for r in logged if r.accessor == accessor]
            rates = {kind: per_real_hour([r.timestamp for r in mine if kind_of(r.path) == kind],
                                          WINDOW, SCALE)
                     for kind in {kind_of(r.path) for r in mine}}
            kinds.append(rates)
            samples.append(sum(rates.values()))
            counted.append(len(mine) / real_hours)
            kv_reads.append(rates.get("kv read", 0.0))
        breakdown = {kind: statistics.median(k.get(kind, 0.0) for k in kinds)
                     for kind in sorted({kind for k in kinds for kind in k})}
        row = Row(
            name="requests/hour, 1 KV + 1 DB, " + ("lease check 30s (default)" if check
                                                   else "lease check off"),
            unit="req/h",
            target=Target("max", 15.0, "<= 15 req/h"),
            samples=samples, baseline_samples=kv_reads,
            baseline_what="the KV re-reads alone (3600 / poll_interval = 12 expected)",
            what=f"requests per token in a {WINDOW:g}s steady-state window with every "
                 f"interval and TTL divided by {SCALE} (poll {REAL_POLL / SCALE:g}s, lease "
                 f"ttl {ttl}s, token ttl {token_ttl}s, lease check "
                 f"{check / SCALE:g}s), scaled to one hour at real settings (poll 5m, lease "
                 f"and token ttl 1h, lease check {check:g}s)")
        row.extra["per_hour_by_kind"] = breakdown
        row.extra["per_hour_counted_in_window"] = counted
        row.notes.append("per hour: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                    breakdown.items()))
        rows.append(row)
    return rows


def vault_start_standin(ctx: Context) -> list[Row]:
    """The same start against the project's Vault test server, for comparison."""
    return vault_start(ctx, standin=True)


__all__ = ["refs_1000", "requests_per_hour", "rss_iam", "vault_start", "vault_start_standin"]


# -- resident memory with an AWS IAM login --------------------------------------------------------

AWS_HEADER = "vault.bench.example"


def rss_iam(ctx: Context) -> list[Row]:
    """The supervisor logged in with aws-iam: its signing helper process (botocore's chain,
    never imported by the supervisor) reads a task role's keys from an ECS credentials
    endpoint on loopback and signs GetCallerIdentity, and the server replays it to moto's
    STS (signature checked)."""
    return _rss_iam(ctx, tls=False)


def rss_iam_tls(ctx: Context) -> list[Row]:
    """As rss_iam, with Vault over https verified against VAULT_CACERT: what a TLS
    context (OpenSSL's own tables, the CA) adds to the resident supervisor."""
    return _rss_iam(ctx, tls=True)


def _rss_iam(ctx: Context, tls: bool) -> list[Row]:
    from benchmarks.local import bare_python_rss, mb
    from tests.services.ecs_credentials import EcsCredentialsServer, task_role_credentials
    from tests.services.moto_sts import MotoServer

    server = vault_server(ctx)
    folder = ctx.folder("rss-iam-tls" if tls else "rss-iam")
    moto = MotoServer()
    moto.start()
    ctx.stack.callback(moto.stop)
    endpoint = EcsCredentialsServer(task_role_credentials(moto))
    endpoint.start()
    ctx.stack.callback(endpoint.stop)
    server.configure_aws(moto, header_value=AWS_HEADER)
    server.set_policy("bench-iam", {"secret/data/app/*": ["read"],
                                    f"database/creds/{DB_ROLE}": ["read"]})
    server.add_aws_role("bench-task", endpoint.role_arn, ["bench-iam"], ttl=TOKEN_TTL)
    address = {"VAULT_ADDR": server.https_addr, "VAULT_CACERT": str(server.tls[0])} if tls \
        else {"VAULT_ADDR": server.addr}
    env = entrypoint_env({
        **address, "ENTRYPOINT_VAULT_AUTH": "aws-iam",
        "ENTRYPOINT_VAULT_ROLE": "bench-task", "ENTRYPOINT_VAULT_AWS_HEADER": AWS_HEADER,
        # Only the ECS endpoint in botocore's chain: no profile, no instance metadata.
        "AWS_CONFIG_FILE": str(folder / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **endpoint.env(), **kv_refs(), "DATABASE_URL": DB_URL})
    runs = []
    for i in range(ctx.runs + 1):
        before = len(server.requests)
        run = supervised_start(ctx, folder / f"run-{i}", env, ["SECRET_0"])
        if run["env"]["SECRET_0"] != "vault-value-0":
            raise BenchError("the app did not get the Vault value")
        if not any(r.path == "auth/aws/login" and r.status == 200
                   for r in server.requests[before:]):
            raise BenchError("no successful auth/aws/login in the server's log")
        runs.append(run)
    runs = runs[1:]
    row = Row(
        name="supervisor RSS, Vault over https + IAM login" if tls else
             "supervisor RSS, Vault + IAM login", unit="MB",
        target=Target("max", 25.0, "<= 25 MB"),
        samples=[mb(r["rss"]["VmRSS"]) for r in runs],
        baseline_samples=[mb(b["VmRSS"]) for b in bare_python_rss(ctx)],
        baseline_what='python -c "import time; time.sleep(60)"',
        what="VmRSS of the entrypoint process (supervise mode, aws-iam login through moto "
             "STS with ECS task-role credentials, 10 KV + 1 DB refs, token renewal and "
             "rotation engine running) 0.5s after the app probe started"
             + (", Vault's https listener verified with VAULT_CACERT" if tls else ""))
    row.extra["peak_VmHWM_MB"] = [mb(r["rss"]["VmHWM"]) for r in runs]
    row.extra["RssAnon_MB"] = [mb(r["rss"]["RssAnon"]) for r in runs]
    row.extra["threads"] = [r["rss"]["Threads"] for r in runs]
    row.extra["start_ms"] = [r["start_ms"] for r in runs]
    return [row]
