"""The local secrets directory is watched at every file its lookup considers, not only at
the one it found at the start: ``app.json`` renamed ``app.toml``, or ``secret/app.json``
made next to ``secret/data/app.json`` (Vault's API layout, which it wins over), was never
seen, and the app kept the old value while a fresh read answered the new one."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.sources.local.folder import LocalSource
from tests.helpers.residents import DEADLINE, Posted, quiet_config, residents, restarts

LOG = logging.getLogger("entrypoint")


def put(root: Path, name: str, text: str) -> None:
    file = root / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


@pytest.fixture
def start(posted: Posted) -> Iterator[Callable[..., dict[str, str]]]:
    with residents(posted, LOG) as make:
        def run(root: Path, env: dict[str, str], **fields: Any) -> dict[str, str]:
            return dict(make(quiet_config(**fields), env, LocalSource(root)).prepare())

        yield run


def restart_with(posted: Posted, name: str, value: str) -> None:
    """Restarts come until one gives ``name`` ``value`` (a rename and a write may be two
    changes, or one)."""
    got = []
    for event in restarts(posted):
        got.append(event.env.get(name))
        if event.env.get(name) == value:
            return
    raise AssertionError(f"no restart with {name}={value} within {DEADLINE}s (got {got})")


def test_a_secret_file_renamed_to_another_format_is_still_watched(
        tmp_path: Path, start: Callable[..., dict[str, str]], posted: Posted) -> None:
    """The rename is seen at the file watched; the edit after it, since the watch
    follows each generation (and so the file found by its read) or every candidate."""
    put(tmp_path, "secret/app.json", json.dumps({"k": "v1"}))
    assert start(tmp_path, {"A": "vault:secret/app#k"})["A"] == "v1"
    os.rename(tmp_path / "secret/app.json", tmp_path / "secret/app.toml")
    (tmp_path / "secret/app.toml").write_text('k = "v2"\n')
    restart_with(posted, "A", "v2")
    (tmp_path / "secret/app.toml").write_text('k = "v3"\n')
    restart_with(posted, "A", "v3")


def test_a_file_made_where_the_lookup_looks_first_is_a_change(
        tmp_path: Path, start: Callable[..., dict[str, str]], posted: Posted) -> None:
    """In Vault's API layout at the start; the plain layout, which wins, made later,
    its folder too."""
    put(tmp_path, "secret/data/app/db.json", json.dumps({"k": "api"}))
    assert start(tmp_path, {"A": "vault:secret/app/db#k"})["A"] == "api"
    put(tmp_path, "secret/app/db.json", json.dumps({"k": "plain"}))
    restart_with(posted, "A", "plain")


def test_a_folder_made_in_the_other_layout_of_a_watched_folder_is_a_change(
        tmp_path: Path, start: Callable[..., dict[str, str]], posted: Posted) -> None:
    put(tmp_path, "kv/data/app/a.json", json.dumps({"A": "a"}))
    assert start(tmp_path, {}, secrets=["kv/app/"])["A"] == "a"
    put(tmp_path, "kv/app/b.json", json.dumps({"B": "b"}))
    restart_with(posted, "B", "b")
