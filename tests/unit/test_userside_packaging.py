"""Dockerfile.example installs the package as users do (``pip install``, not editable):
every subpackage must then be in the distribution, or the image cannot even start."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def subpackages() -> set[str]:
    return {".".join(init.parent.relative_to(ROOT).parts)
            for init in (ROOT / "entrypoint").rglob("__init__.py")}


def test_subpackages_are_found() -> None:
    assert {"entrypoint", "entrypoint.sources.vault"} <= subpackages()


def test_every_subpackage_is_in_the_distribution() -> None:
    from setuptools import find_packages

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = setuptools.get("packages")
    if isinstance(listed, dict):  # packages.find: ask setuptools what it discovers
        listed = find_packages(str(ROOT), include=listed["find"]["include"])
    missing = sorted(subpackages() - set(listed or []))
    assert not missing, f"not in [tool.setuptools] packages: {', '.join(missing)}"
