"""A source first built after the app started (a template edited to read Vault, where
only the local folder was read at start) is built with start-up over: its failed calls
come back at once, as every other source's do, instead of retrying through the start-up
window while the rotation thread waits on them. Found by the Consul generations review:
the engine ended start-up only for the sources built at start."""

from __future__ import annotations

import socket

from entrypoint.config.model import load
from entrypoint.sources.registry import for_config
from entrypoint.sources.vault.source import VaultSource


def closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: a connect is refused
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_source_built_after_start_has_start_up_over() -> None:
    environ = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}",
               "VAULT_TOKEN": "hvs.not-used-here", "ENTRYPOINT_STARTUP_TIMEOUT": "60s"}
    sources = for_config(load({}, environ), environ)
    try:
        file_source = sources.get("file")  # what the start read
        sources.end_startup()  # the app has its values (Engine.start)
        vault = sources.get("vault")  # first asked for after start
        assert isinstance(vault, VaultSource) and file_source is sources.get("file")
        assert not vault.client.in_startup()
    finally:
        sources.close()


def test_a_source_built_before_the_start_ended_is_in_start_up_until_then() -> None:
    environ = {"VAULT_ADDR": f"http://127.0.0.1:{closed_port()}",
               "VAULT_TOKEN": "hvs.not-used-here", "ENTRYPOINT_STARTUP_TIMEOUT": "60s"}
    sources = for_config(load({}, environ), environ)
    try:
        vault = sources.get("vault")
        assert isinstance(vault, VaultSource) and vault.client.in_startup()
        sources.end_startup()
        assert not vault.client.in_startup()
    finally:
        sources.close()
