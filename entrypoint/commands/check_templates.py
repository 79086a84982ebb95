"""The template part of ``entrypoint check``: render every template in memory, write nothing.

A template can read paths no variable references (``secret("kv/app/tls")``) and can name
a key that does not exist; only rendering it finds out. Each template is rendered as
``entrypoint render`` would render it (same code, same errors, same exit statuses), but
the bytes are dropped instead of written, and every lease read for it is revoked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from entrypoint.commands.check import CheckRow, Readers, detail_of, failed, users_of
from entrypoint.config.model import Config
from entrypoint.errors import ConfigError, EntrypointError
from entrypoint.plan.keys import SourceKey
from entrypoint.sources.base import Fetched
from entrypoint.sources.registry import Sources


def template_rows(config: Config, sources: Sources, environ: Mapping[str, str],
                  log: logging.Logger, checked: set[SourceKey], issue: bool = False,
                  seed: Mapping[SourceKey, Fetched] | None = None,
                  readers: Readers | None = None) -> list[CheckRow]:
    """One row per env template and file template, then one per path only they read
    (found, missing, refused or unreadable). Without ``issue`` a write in a template is
    validated and answered by placeholders. ``seed``: what the path rows read already
    (with --issue, a certificate issued once). Each template is added to the ``readers``
    of what it read."""
    if not (config.template or config.env_template):
        return []
    users: Readers = {} if readers is None else readers
    from entrypoint.plan.resolution import Runtime
    from entrypoint.render.templates import render_env, render_files

    runtime = Runtime(config, environ, log, sources=sources)
    generation = runtime.new_generation(seed)
    generation.dry_issue = not issue
    rows: list[CheckRow] = []
    try:
        try:
            resolution = runtime.resolve(generation)
        except EntrypointError as exc:
            # env() in a template needs the app's environment; the rows above say why not.
            return [CheckRow("templates", "template", "", "skipped: the app's environment "
                             "does not resolve (see above)", ok=False, code=exc.exit_code)]
        allowed = [Path(p) for p in config.template_allowed_dirs]
        for spec in config.env_template:
            # One at a time, in config order, so that each gets its own row; a later one
            # still sees the earlier ones through resolution.managed, as in render.
            one = dataclasses.replace(config, env_template=[spec], template=[])
            label = f"env_template {spec.name}"
            generation.used.clear()
            try:
                render_env(one, runtime, resolution, allowed=allowed)
            except EntrypointError as exc:
                rows.append(failed(label, "env-template", exc))
            else:
                rows.append(CheckRow(label, "env-template", "", "ok"))
            _add_reader(users, generation.used, label)
        seen: dict[Path, str] = {}
        for file_spec in config.template:
            label = f"template {file_spec.destination}"
            if file_spec.destination in seen:
                # render_files refuses this for the whole list; here they come one by one.
                rows.append(failed(label, "template", ConfigError(
                    f"{file_spec.origin}: two templates write {file_spec.destination} "
                    f"({seen[file_spec.destination]} and {file_spec.name})")))
                continue
            seen[file_spec.destination] = file_spec.name
            one = dataclasses.replace(config, template=[file_spec], env_template=[])
            generation.used.clear()
            try:
                rendered = render_files(one, runtime, resolution, allowed=allowed)
            except EntrypointError as exc:
                rows.append(failed(label, "template", exc))
            else:
                size = sum(len(item.content) for item in rendered)
                rows.append(CheckRow(label, "template", f"{size} bytes", "ok"))
            _add_reader(users, generation.used, label)
        for key, fetched in sorted(generation.fetched.items(),
                                   key=lambda kv: kv[0].sort_key()):
            if key not in checked:
                rows.append(CheckRow(key.ref, fetched.kind, detail_of(fetched),
                                     "ok (read by a template)",
                                     used_by=users_of(users.get(key, {}).values())))
        for key, error in sorted(generation.errors.items(), key=lambda kv: kv[0].sort_key()):
            # Missing, refused or unreadable: its template's row has the error; this row
            # lists the path with the others, and names every template that reads it.
            if key not in checked:
                rows.append(dataclasses.replace(
                    failed(key.ref, "-", error),
                    used_by=users_of(users.get(key, {}).values())))
    finally:  # the seeded ones were given back by their path rows
        _revoke([(k, f) for k, f in generation.fetched.items() if k not in generation.seeded],
                sources, rows)
    return rows


def _add_reader(readers: Readers, keys: Iterable[SourceKey], label: str) -> None:
    # The check's own generation: what it "used" since the last clear() is what this one
    # template read (the variables' reads were done before).
    for key in keys:
        readers.setdefault(key, {}).setdefault(None, set()).add(label)


def _revoke(fetched: Iterable[tuple[SourceKey, Fetched]], sources: Sources,
            rows: list[CheckRow]) -> None:
    """A check leaves nothing behind: the leases read for the templates go too."""
    built = sources.built()
    for key, item in fetched:
        source = built.get(key.scheme)
        if item.lease_id and source is not None:
            try:
                source.revoke_lease(item.lease_id)
            except EntrypointError as exc:
                rows.append(failed("lease", "revoke", exc))
