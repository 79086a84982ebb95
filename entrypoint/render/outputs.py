"""Rendering a successor's outputs one file template at a time (the engine's ``Renderer``).

At start every template must render (:func:`render_all`: no last good file exists yet).
After start, a file template that fails (a path deleted, a policy changed, a template
error) is left out: its destination keeps its last good bytes and the others are written
and acted on. Unless its ``error_on_refresh`` is ``fatal``: then nothing is written and
:class:`FatalOutputError` says which one. Env templates feed the environment, which is
computed whole: one that fails fails the successor, as a reference does.

Which paths each template read is recorded, so that a path only failing templates read
is held at its last good value (its lease is not given up under a file that still uses
it) and read again on the retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from entrypoint.config.model import Config, TemplateSpec
from entrypoint.errors import ConfigError, EntrypointError
from entrypoint.plan.keys import SourceKey, bulk_key
from entrypoint.plan.resolution import Resolution, Runtime
from entrypoint.plan.resolve import Generation
from entrypoint.render import sandbox
from entrypoint.render.errors import copy_error
from entrypoint.render.outcome import FatalOutputError, OutputFailure
from entrypoint.render.templates import (
    RenderResult,
    _log_fetches,
    render_env,
    render_file,
    write_changed,
)
from entrypoint.sources.base import Fetched


class _Reads(Generation):
    """``generation`` seen through one template at a time: which paths it reads, and a
    path that failed to be read fails again (once per successor, not once per template)."""

    def __init__(self, inner: Generation) -> None:  # shares the inner generation's state
        self.inner = inner
        self.sources = inner.sources
        self.concurrency = inner.concurrency
        self.fetched = inner.fetched
        self.seeded = inner.seeded
        self.errors = inner.errors  # recorded by inner.get, for this successor only
        self._guard = inner._guard
        self.read: set[SourceKey] = set()

    def get(self, key: SourceKey) -> Fetched:
        self.read.add(key)
        if key in self.errors:
            raise self.errors[key]
        return self.inner.get(key)

    def prefetch(self, keys: Iterable[SourceKey]) -> None:
        for key in keys:
            self.get(key)


def error_on_refresh(config: Config, spec: TemplateSpec) -> str:
    return spec.error_on_refresh or config.template_error_on_refresh


def render_outputs(config: Config, runtime: Runtime, resolution: Resolution, *,
                   allowed: Iterable[Path] = ()
                   ) -> tuple[RenderResult, tuple[OutputFailure, ...]]:
    """Env templates (all or nothing), then each file template on its own; write the
    ones that rendered and differ. Returns what was written and what failed."""
    generation = resolution.generation
    before = set(generation.fetched)
    reads = _Reads(generation)
    view = Resolution(managed=resolution.managed, generation=reads,
                      passthrough=resolution.passthrough)
    names = render_env(config, runtime, view, allowed=allowed)
    used = set(reads.read) | runtime.plan.source_keys() | {bulk_key(p) for p in config.secrets}
    env = sandbox.make_environment(config.template_max_bytes)
    child_env = view.child_env()
    rendered = []
    failed: list[tuple[TemplateSpec, EntrypointError, set[SourceKey]]] = []
    seen: dict[Path, str] = {}
    for spec in config.template:
        if spec.destination in seen:
            raise ConfigError(f"{spec.origin}: two templates write {spec.destination} "
                              f"({seen[spec.destination]} and {spec.name})")
        seen[spec.destination] = spec.name
        reads.read = set()
        try:
            rendered.append(render_file(config, spec, env, child_env, view, allowed))
        except EntrypointError as exc:
            if error_on_refresh(config, spec) == "fatal":
                message = (f"template {spec.destination} (error_on_refresh = fatal): "
                           f"{exc.message}")
                raise FatalOutputError(spec.destination,
                                       copy_error(exc, message, exc.hint)) from None
            failed.append((spec, exc, reads.read))
            continue
        used |= reads.read
    _log_fetches(runtime.log, resolution, before)
    written = write_changed(rendered, runtime.log)
    failures = tuple(OutputFailure(spec.destination, exc, frozenset(keys - used))
                     for spec, exc, keys in failed)
    return (RenderResult(env=tuple(names), changed=written.changed,
                         unchanged=written.unchanged), failures)
