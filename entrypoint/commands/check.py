"""``entrypoint check``: is everything in place for the app to start? Values never shown.

It validates the config, reaches Vault, logs in and reads every referenced path once,
then gives one row per step: what, kind, version or TTL, status. Leases obtained by the
check are revoked right away and its own token at the end: a check leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from entrypoint.config.model import Config
from entrypoint.errors import EntrypointError
from entrypoint.plan.keys import SourceKey, bulk_key
from entrypoint.sources.base import Fetched, Refresh, Source
from entrypoint.sources.registry import Sources, for_config


@dataclass(frozen=True)
class CheckRow:
    path: str  # "vault:kv/app/db", or a step: "config", "vault", "login"
    kind: str  # kv1, kv2, leased, static-creds, local, file, consul; server, login, config
    detail: str  # "v3", "ttl 3600s", a server version, policies
    status: str  # "ok", or what is wrong
    ok: bool = True
    code: int = 0  # the exit status of the error, for the command's own exit status


def detail_of(fetched: Fetched) -> str:
    if fetched.parts:
        count = len(fetched.parts)
        return f"{count} secret{'s' if count != 1 else ''}"
    if fetched.version is not None:
        return f"v{fetched.version}"
    if fetched.refresh is Refresh.ROTATED and fetched.ttl is not None:
        return f"rotates in {fetched.ttl:g}s"
    if fetched.lease_duration:
        return f"ttl {fetched.lease_duration:g}s" + (" renewable" if fetched.renewable else "")
    return ""


def failed(path: str, kind: str, exc: EntrypointError) -> CheckRow:
    # The message alone: a Python class name means nothing to the user reading the table.
    return CheckRow(path, kind, "", str(exc), ok=False, code=exc.exit_code)


def preflight_rows(source: Source, rows: list[CheckRow]) -> bool:
    """Reach the source's server and log in; False when reading paths is pointless."""
    ok = True
    for step in source.preflight():
        if step.error is not None:
            rows.append(failed(step.name, step.kind, step.error))
            ok = False
        else:
            rows.append(CheckRow(step.name, step.kind, step.detail, "ok"))
    return ok


def namesake_rows() -> list[CheckRow]:
    """PyPI's unrelated ``entrypoint`` distribution installs an import package of our
    name: next to ours, each overwrites the other's files (README, "Package, licence and
    names"). A warning row, not a failure: the check of secrets still holds."""
    from importlib import metadata

    try:
        other = metadata.distribution("entrypoint")
    except metadata.PackageNotFoundError:
        return []
    return [CheckRow("environment", "package", f"entrypoint {other.version}",
                     "warning: the 'entrypoint' distribution from PyPI is installed here and "
                     "shares the import package entrypoint/ with vault-entrypoint; "
                     "uninstalling either breaks the other: give vault-entrypoint an "
                     "environment of its own")]


def path_rows(source: Source, key: SourceKey, wanted: set[str], issue: bool = False,
              keep: dict[SourceKey, Fetched] | None = None) -> list[CheckRow]:
    """Read one path: its row (a missing key fails it, as it would fail the start), and
    its lease given back at once. A write (``?write&...``) is only validated (would the
    PKI role accept it?) unless ``issue``: ``entrypoint check --issue``. What was read
    goes into ``keep``, so that the templates' check reads (and issues) nothing twice."""
    note = ""
    try:
        if not key.params:
            fetched = source.fetch(key.path, key.version)
        elif issue:
            fetched = source.issue(key.path, key.params)
        else:
            note, fetched = source.check_issue(key.path, key.params)
    except EntrypointError as exc:
        return [failed(key.ref, "-", exc)]
    if keep is not None:
        keep[key] = fetched
    missing = sorted(k for k in wanted if k not in fetched.data)
    if missing:
        label = ", ".join(f"{key.path}#{k}" for k in missing)
        present = ", ".join(sorted(fetched.data)) or "none"
        rows = [CheckRow(key.ref, fetched.kind, detail_of(fetched),
                         f"missing key {label} (keys present: {present})", ok=False, code=78)]
    elif note:
        rows = [CheckRow(key.ref, fetched.kind, note,
                         "ok (not issued; entrypoint check --issue issues one)")]
    else:
        rows = [CheckRow(key.ref, fetched.kind, detail_of(fetched), "ok")]
    if fetched.lease_id:
        try:
            source.revoke_lease(fetched.lease_id)
        except EntrypointError as exc:
            rows.append(failed(key.ref, "revoke", exc))
    return rows


def run_check(config: Config, environ: Mapping[str, str], paths: Iterable[SourceKey],
              keys: Mapping[SourceKey, Iterable[str]] | None = None,
              log: logging.Logger | None = None, issue: bool = False) -> list[CheckRow]:
    """Rows for config, server, login, every path in ``paths`` plus ``config.secrets``,
    then every template, rendered in memory (see :mod:`entrypoint.commands.check_templates`).
    Writes are validated, not made, unless ``issue``; the check never uses
    ``issue_cache_dir`` (it neither reuses nor keeps a certificate).

    ``keys`` names the keys each path must hold (from the references); a missing one
    fails that path's row, as it would fail the start.
    """
    wanted = {k: set(v) for k, v in (keys or {}).items()}
    todo: set[SourceKey] = set(paths) | {bulk_key(p) for p in config.secrets}
    rows = [CheckRow("config", "config", config.origins.get("config", "") if
                     config.config else "", "ok"), *namesake_rows()]
    try:
        import dataclasses

        sources: Sources = for_config(dataclasses.replace(config, issue_cache_dir=None),
                                      environ)
    except EntrypointError as exc:
        return [*rows, failed("config", "config", exc)]
    try:
        usable: dict[str, bool] = {}
        read: dict[SourceKey, Fetched] = {}
        for key in sorted(todo, key=SourceKey.sort_key):
            try:
                source = sources.get(key.scheme)
            except EntrypointError as exc:
                rows.append(failed(key.ref, "-", exc))
                continue
            if key.scheme not in usable:
                usable[key.scheme] = preflight_rows(source, rows)
            if usable[key.scheme]:
                rows += path_rows(source, key, wanted.get(key, set()), issue, keep=read)
            else:
                rows.append(CheckRow(key.ref, "-", "", "skipped (see above)", ok=False))
        if not all(usable.values()):
            if config.template or config.env_template:
                rows.append(CheckRow("templates", "template", "", "skipped (see above)",
                                     ok=False))
        else:
            from entrypoint.commands.check_templates import template_rows

            rows += template_rows(config, sources, environ,
                                  log or logging.getLogger("entrypoint"), set(todo),
                                  issue=issue, seed=read)
    finally:
        sources.close()
    return rows


def render_table(rows: list[CheckRow]) -> str:
    header = ("PATH", "KIND", "VERSION/TTL", "STATUS")
    table = [header] + [(r.path, r.kind, r.detail, r.status) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:3])) + "  " + line[3]
             for line in table]
    return "\n".join(line.rstrip() for line in lines)


def render_json(rows: list[CheckRow]) -> str:
    return json.dumps({"ok": all(r.ok for r in rows), "rows": [asdict(r) for r in rows]},
                      indent=2)


def main(config: Config, environ: Mapping[str, str] = os.environ,
         log: logging.Logger | None = None, fmt: str = "table", issue: bool = False) -> int:
    """``entrypoint check [--format table|json] [--issue]``: 0 when every row is ok, else
    the exit status of the first failure (69 unavailable, 77 denied, 78 config)."""
    from entrypoint.plan import refs
    from entrypoint.plan.resolve import plan_environment

    try:
        plan = plan_environment(environ, keep=config.pass_env)
    except EntrypointError as exc:
        rows = [failed("config", "config", exc)]
    else:
        keys: dict[SourceKey, set[str]] = {}
        for parts in plan.references.values():
            for ref in refs.references(parts):
                keys.setdefault(ref.source_key, set())
                if ref.key is not None:
                    keys[ref.source_key].add(ref.key)
        rows = run_check(config, environ, keys, keys, log, issue=issue)
    print(render_json(rows) if fmt == "json" else render_table(rows))
    return exit_code(rows)


def exit_code(rows: list[CheckRow]) -> int:
    for row in rows:
        if not row.ok:
            return row.code or 78  # a skipped row follows the failure that caused it
    return 0
