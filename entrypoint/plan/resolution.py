"""One resolution: config + environment -> a generation of secrets -> the app's environment.

The rotation engine calls :meth:`Runtime.resolve` again for each new generation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError
from entrypoint.plan.resolve import (
    EnvPlan,
    Generation,
    bulk_export,
    plan_environment,
    resolve_environment,
)
from entrypoint.secret import Secret
from entrypoint.sources.registry import Sources, for_config

if TYPE_CHECKING:
    from entrypoint.plan.keys import SourceKey
    from entrypoint.sources.base import Fetched


@dataclass
class Resolution:
    """What one generation gives the app."""

    managed: dict[str, Secret]
    generation: Generation
    passthrough: dict[str, str] = field(default_factory=dict)

    def child_env(self) -> dict[str, str]:
        env = dict(self.passthrough)
        env.update({name: value.reveal() for name, value in self.managed.items()})
        return env


class Runtime:
    def __init__(self, config: Config, environ: Mapping[str, str],
                 log: logging.Logger, sources: Sources | None = None) -> None:
        self.config = config
        self.environ = dict(environ)
        self.log = log
        self.sources = sources or for_config(config, environ)
        self.plan: EnvPlan = plan_environment(environ, keep=config.pass_env)

    def new_generation(self, seed: Mapping[SourceKey, Fetched] | None = None) -> Generation:
        """A cache of fetches, starting from ``seed`` (what is known not to have changed)."""
        return Generation(self.sources, concurrency=self.config.vault_concurrency, seed=seed)

    def resolve(self, generation: Generation | None = None) -> Resolution:
        generation = generation or self.new_generation()
        managed: dict[str, Secret] = {}
        if self.config.secrets:
            managed.update(bulk_export(
                self.config.secrets, generation, prefix=self.config.secrets_prefix,
                upcase=self.config.secrets_upcase, sanitize=self.config.secrets_sanitize))
            for name in [n for n in managed if n in self.plan.passthrough]:
                # The environment the user wrote wins over a bulk key of the same name.
                self.log.warning("bulk export: variable %s is already set in the environment; "
                                 "keeping the environment's value", name)
                del managed[name]
        explicit = resolve_environment(self.plan, generation)
        for name in explicit:
            if name in managed:
                raise ConfigError(f"variable {name} is both a reference and a bulk-exported key",
                                  hint="rename one, or set secrets_prefix")
        managed.update(explicit)
        for path_key, fetched in sorted(generation.fetched.items(), key=lambda kv: kv[0][1]):
            if path_key in generation.seeded:
                continue
            scheme, path = path_key.scheme, path_key.path
            detail = ""
            if fetched.version is not None:
                detail = f" v{fetched.version}"
            if fetched.lease_duration is not None:
                detail += f" lease ttl={fetched.lease_duration:g}s"
            self.log.info("fetched %s:%s%s", scheme, path, detail)
        return Resolution(managed=managed, generation=generation,
                          passthrough=dict(self.plan.passthrough))

    def close(self) -> None:
        self.sources.close()
