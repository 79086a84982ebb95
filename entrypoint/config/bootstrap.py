"""Which variables configure the entrypoint itself (and so never reach the app unless
``pass_env`` names them). Imports nothing: the fast ``--exec`` path reads it."""

from __future__ import annotations

BOOTSTRAP_VARIABLES = frozenset({
    "VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID", "CONSUL_HTTP_TOKEN",
})


def is_bootstrap_variable(name: str) -> bool:
    """Variables that configure the entrypoint itself, stripped from the app's environment."""
    return name.startswith("ENTRYPOINT_") or name in BOOTSTRAP_VARIABLES
