"""Shared fixtures live in plugin modules, one per area, so that they can grow apart.

The layer of a test is its folder (docs/testing.md): ``unit/`` runs in-process and is
fast; ``e2e/`` and ``servers/`` start processes or servers and are marked ``slow`` here.
``pytest -m "not slow"`` is the fast subset; ``-m unit``, ``-m e2e``, ``-m servers`` one layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.services.fixtures",
    "tests.vaultserver.fixtures",
    "tests.realservers.vault_fixtures",
    "tests.helpers.fixtures",
    "tests.realservers.consul_fixtures",
    "tests.helpers.file_notices",
]

HERE = Path(__file__).resolve().parent
LAYERS = {"unit": (), "e2e": ("slow",), "servers": ("slow",)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            layer = item.path.resolve().relative_to(HERE).parts[0]
        except ValueError:
            continue
        if layer in LAYERS:
            item.add_marker(layer)
            for name in LAYERS[layer]:
                item.add_marker(name)
