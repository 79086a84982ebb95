"""Which source answers which reference scheme, created lazily so unused clients never load."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from entrypoint.config.model import Config
from entrypoint.errors import ConfigError, UnavailableError
from entrypoint.sources.base import Source

log = logging.getLogger("entrypoint")


class Sources:
    """Scheme -> source, each built on first use.

    The resolver's worker threads and the rotation engine ask at once: building is done
    under a lock, so each scheme gets one source (one Vault client, one login), and none
    is built after :meth:`close` (it would never be closed: its leases would leak).
    """

    def __init__(self, factories: Mapping[str, Callable[[], Source]],
                 missing: Mapping[str, str]) -> None:
        self._factories = dict(factories)
        self._missing = dict(missing)
        self._built: dict[str, Source] = {}
        # Re-entrant: a factory may ask for another source (transit: uses vault:'s login).
        self._lock = threading.RLock()
        self._closed = False
        self._started = False

    def get(self, scheme: str) -> Source:
        source = self._built.get(scheme)  # a dict read is atomic: no lock once built
        if source is not None:
            return source
        with self._lock:
            source = self._built.get(scheme)
            if source is None:
                factory = self._factories.get(scheme)
                if factory is None:
                    raise ConfigError(self._missing.get(scheme,
                                                        f"no source for {scheme}: references"))
                if self._closed:
                    raise UnavailableError(f"{scheme}: shutting down; nothing more is fetched")
                # Factories only build clients (no request), so holding the lock is brief.
                source = self._built[scheme] = factory()
                if self._started:
                    # First used after start (a template edited to read Vault): its
                    # failed calls must come back at once, as every other source's.
                    source.end_startup()
            return source

    def end_startup(self) -> None:
        """The app has its values: every source, built now or later, fails at once from
        here on instead of retrying through the start-up window."""
        with self._lock:
            self._started = True
            built = list(self._built.values())
        for source in built:
            source.end_startup()

    def built(self) -> Mapping[str, Source]:
        with self._lock:
            return dict(self._built)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            built = list(self._built.values())
        for source in built:
            source.close()


def for_config(config: Config, environ: Mapping[str, str] = os.environ) -> Sources:
    factories: dict[str, Callable[[], Source]] = {}
    missing: dict[str, str] = {}

    def file_source() -> Source:
        from entrypoint.sources.file.source import FileSource

        return FileSource()

    factories["file"] = file_source
    if config.local_secrets is not None:
        root = config.local_secrets

        def local_source() -> Source:
            from entrypoint.sources.local.folder import LocalSource

            log.info("vault: references answered by local secrets directory %s", root)
            server = environ.get("VAULT_AGENT_ADDR") or environ.get("VAULT_ADDR")
            if server:
                # A dev setting left in a deployed task would silently serve dev values.
                log.warning("vault: ENTRYPOINT_LOCAL_SECRETS is set, so Vault at %s is not "
                            "used; unset ENTRYPOINT_LOCAL_SECRETS to read from Vault", server)
            return LocalSource(root)

        factories["vault"] = local_source
    elif environ.get("VAULT_ADDR") or environ.get("VAULT_AGENT_ADDR"):

        def vault_source() -> Source:
            from entrypoint.sources.vault.source import VaultSource

            return VaultSource.from_config(config, environ)

        factories["vault"] = vault_source
    else:
        missing["vault"] = ("a vault: reference needs VAULT_ADDR (a Vault server) or "
                            "ENTRYPOINT_LOCAL_SECRETS (a local secrets directory); neither is set")
    if environ.get("CONSUL_HTTP_ADDR"):

        def consul_source() -> Source:
            from entrypoint.sources.consul.source import ConsulSource

            return ConsulSource.from_environment(environ)

        factories["consul"] = consul_source
    elif config.local_secrets is not None:
        root = config.local_secrets

        def local_consul() -> Source:
            from entrypoint.sources.local.consul import LocalConsulSource

            return LocalConsulSource(root)

        factories["consul"] = local_consul
    else:
        missing["consul"] = ("a consul: reference needs CONSUL_HTTP_ADDR (a Consul agent) or "
                             "ENTRYPOINT_LOCAL_SECRETS; neither is set")
    _transit(config, factories, missing, lambda: sources)
    sources = Sources(factories, missing)
    return sources


def _transit(config: Config, factories: dict[str, Callable[[], Source]],
             missing: dict[str, str], sources: Callable[[], Sources]) -> None:
    """transit: values are decrypted by the source that answers vault: (its login)."""
    key, mount = config.transit_key, config.transit_mount
    if config.local_secrets is not None:
        root = config.local_secrets

        def local_transit() -> Source:
            from entrypoint.sources.local.transit import LocalTransitSource

            return LocalTransitSource(root, key, mount)

        factories["transit"] = local_transit
    elif "vault" in factories:

        def transit() -> Source:
            from entrypoint.sources.vault.source import VaultSource
            from entrypoint.sources.vault.transit import TransitSource

            vault = sources().get("vault")
            assert isinstance(vault, VaultSource)
            return TransitSource(vault, key, mount)

        factories["transit"] = transit
    else:
        missing["transit"] = ("a transit: value needs VAULT_ADDR (a Vault server) or "
                              "ENTRYPOINT_LOCAL_SECRETS; neither is set")
