"""``entrypoint check``: is everything in place for the app to start? Values never shown.

It validates the config, reaches Vault, logs in and reads every referenced path once,
then gives one row per step: what, kind, version or TTL, what reads it, status. Leases
obtained by the check are revoked right away and its own token at the end: a check leaves
nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace

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
    # What reads the path ("variable NAME", "template DEST", "env_template NAME", "bulk
    # export"):
    # a failed row says what to fix, as run names the variables of a missing path.
    used_by: tuple[str, ...] = ()


# Who reads each path, by the key they name (None: the whole path): a missing key fails
# only those that name it.
Readers = dict[SourceKey, dict[str | None, set[str]]]

# How the ``secrets`` setting is named among the users of a path: as its messages name it.
BULK_USER = "bulk export"
# The users named by kind ("variable NAME"); any other is shown as it is.
NAMED_KINDS = ("variable", "template", "env_template")


def users_of(readers: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Variables first, as run names them; then the settings and templates."""
    return tuple(sorted({u for group in readers for u in group},
                        key=lambda user: (not user.startswith("variable "), user)))


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


def path_rows(source: Source, key: SourceKey, readers: Mapping[str | None, set[str]],
              issue: bool = False, keep: dict[SourceKey, Fetched] | None = None
              ) -> list[CheckRow]:
    """Read one path: its row (a missing key fails it, as it would fail the start), and
    its lease given back at once. A write (``?write&...``) is only validated (would the
    PKI role accept it?) unless ``issue``: ``entrypoint check --issue``. What was read
    goes into ``keep``, so that the templates' check reads (and issues) nothing twice.
    ``readers``: the keys of the path its users name, each with its users."""
    wanted = {k for k in readers if k is not None}
    users = users_of(readers.values())
    note = ""
    try:
        if not key.params:
            fetched = source.fetch(key.path, key.version)
        elif issue:
            fetched = source.issue(key.path, key.params)
        else:
            note, fetched = source.check_issue(key.path, key.params)
    except EntrypointError as exc:
        return [replace(failed(key.ref, "-", exc), used_by=users)]
    if keep is not None:
        keep[key] = fetched
    missing = sorted(k for k in wanted if k not in fetched.data)
    if missing:
        label = ", ".join(f"{key.path}#{k}" for k in missing)
        present = ", ".join(sorted(fetched.data)) or "none"
        rows = [CheckRow(key.ref, fetched.kind, detail_of(fetched),
                         f"missing key {label} (keys present: {present})", ok=False, code=78,
                         used_by=users_of(readers[k] for k in missing))]
    elif note:
        rows = [CheckRow(key.ref, fetched.kind, note,
                         "ok (not issued; entrypoint check --issue issues one)", used_by=users)]
    else:
        rows = [CheckRow(key.ref, fetched.kind, detail_of(fetched), "ok", used_by=users)]
    if fetched.lease_id:
        try:
            source.revoke_lease(fetched.lease_id)
        except EntrypointError as exc:
            rows.append(failed(key.ref, "revoke", exc))
    return rows


def run_check(config: Config, environ: Mapping[str, str],
              readers: Mapping[SourceKey, Mapping[str | None, Iterable[str]]],
              log: logging.Logger | None = None, issue: bool = False) -> list[CheckRow]:
    """Rows for config, server, login, every path of ``readers`` plus ``config.secrets``,
    then every template, rendered in memory (see :mod:`entrypoint.commands.check_templates`).
    Writes are validated, not made, unless ``issue``; the check never uses
    ``issue_cache_dir`` (it neither reuses nor keeps a certificate).

    ``readers`` names, for each path, the keys the references name (None for the whole
    path) and who names each (``variable NAME``); a missing key fails that path's row, as
    it would fail the start. Each path row names its users, templates included.
    """
    users: Readers = {k: {name: set(who) for name, who in by.items()}
                      for k, by in readers.items()}
    for bulk in config.secrets:
        users.setdefault(bulk_key(bulk), {}).setdefault(None, set()).add(BULK_USER)
    todo: set[SourceKey] = set(users)
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
        placed: list[tuple[int, SourceKey]] = []  # each path's row, for its templates
        for key in sorted(todo, key=SourceKey.sort_key):
            try:
                source = sources.get(key.scheme)
            except EntrypointError as exc:
                rows.append(failed(key.ref, "-", exc))
                continue
            if key.scheme not in usable:
                usable[key.scheme] = preflight_rows(source, rows)
            if usable[key.scheme]:
                placed.append((len(rows), key))
                rows += path_rows(source, key, users[key], issue, keep=read)
            else:
                rows.append(CheckRow(key.ref, "-", "", "skipped (see above)", ok=False,
                                     used_by=users_of(users[key].values())))
        if not all(usable.values()):
            if config.template or config.env_template:
                rows.append(CheckRow("templates", "template", "", "skipped (see above)",
                                     ok=False))
        else:
            from entrypoint.commands.check_templates import template_rows

            rows += template_rows(config, sources, environ,
                                  log or logging.getLogger("entrypoint"), set(todo),
                                  issue=issue, seed=read, readers=users)
            # Templates render after the path rows: only now is it known what they read.
            # A failed row keeps its own users (the variables of a missing key).
            for at, key in placed:
                if rows[at].ok:
                    rows[at] = replace(rows[at], used_by=users_of(users[key].values()))
    finally:
        sources.close()
    return rows


def users_cell(users: Iterable[str]) -> str:
    """``variables A, B; template /etc/app.conf``: each kind of user named as run names
    variables (a long list counted, not spelt out: the JSON has it whole)."""
    from entrypoint.plan.resolve import named_users

    kinds: dict[str, list[str]] = {}
    for user in users:
        kind, _, name = user.partition(" ")
        if kind in NAMED_KINDS and name:
            kinds.setdefault(kind, []).append(name)
        else:
            kinds.setdefault(user, [])
    return "; ".join(named_users(names, kind) if names else kind
                     for kind, names in kinds.items())


def render_table(rows: list[CheckRow]) -> str:
    # STATUS stays last: it is the long cell, and scripts look for "ok" at the end.
    header = ("PATH", "KIND", "VERSION/TTL", "USED BY", "STATUS")
    table = [header] + [(r.path, r.kind, r.detail, users_cell(r.used_by), r.status)
                        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:4])) + "  " + line[4]
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
        readers: Readers = {}
        for name, parts in plan.references.items():
            for ref in refs.references(parts):
                readers.setdefault(ref.source_key, {}).setdefault(
                    ref.key, set()).add(f"variable {name}")
        rows = run_check(config, environ, readers, log, issue=issue)
    print(render_json(rows) if fmt == "json" else render_table(rows))
    return exit_code(rows)


def exit_code(rows: list[CheckRow]) -> int:
    for row in rows:
        if not row.ok:
            return row.code or 78  # a skipped row follows the failure that caused it
    return 0
