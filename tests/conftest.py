"""Shared fixtures live in plugin modules, one per area, so that they can grow apart."""

pytest_plugins = [
    "tests.services.fixtures",
    "tests.vaultserver.fixtures",
    "tests.realservers.vault_fixtures",
    "tests.helpers.fixtures",
    "tests.realservers.consul_fixtures",
]
