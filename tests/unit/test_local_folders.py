"""Folders of the local secrets directory (``secrets = ["secret/app/"]``) answer as Vault's
do (tests/e2e/test_vault_folders.py): every secret beneath, in path order, with the same
names and the same collision errors."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, SecretNotFound
from entrypoint.plan.keys import SourceKey, bulk_key
from entrypoint.plan.resolve import Generation, bulk_export
from entrypoint.rotation.file_watch import FileWatch
from entrypoint.sources.base import Refresh
from entrypoint.sources.local.folder import LocalSource
from entrypoint.sources.registry import Sources


def put(root: Path, name: str, data: dict[str, object]) -> Path:
    file = root / name
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.suffix == ".toml":
        file.write_text("".join(f'{k} = "{v}"\n' for k, v in data.items()))
    else:
        file.write_text(json.dumps(data))
    return file


def export(root: Path, *paths: str, prefix: str = "", upcase: bool = True) -> dict[str, str]:
    generation = Generation(Sources({"vault": lambda: LocalSource(root)}, {}))
    out = bulk_export(paths, generation, prefix=prefix, upcase=upcase, sanitize=True)
    return {name: value.reveal() for name, value in out.items()}


def test_a_trailing_slash_names_the_folder_apart_from_the_secret() -> None:
    assert bulk_key("secret/app/") == SourceKey("vault", "secret/app/")
    assert bulk_key("/secret/app//") == SourceKey("vault", "secret/app/")
    assert bulk_key("secret/app") == SourceKey("vault", "secret/app")


def test_a_folder_is_every_secret_beneath_it_in_path_order(tmp_path: Path) -> None:
    put(tmp_path, "secret/app/db.json", {"password": "pw-0123"})
    put(tmp_path, "secret/app/nested/deep/cache.toml", {"url": "redis://cache"})
    put(tmp_path, "secret/data/app/api.json", {"api-key": "k-0123"})  # Vault's API layout
    put(tmp_path, "secret/app/db@3.json", {"old": "a kept version, not a secret"})
    put(tmp_path, "secret/app/.db.json.swp", {"x": "an editor's file"})
    put(tmp_path, "secret/app/notes.txt", {"x": "not a secret file"})
    put(tmp_path, "secret/app.json", {"top": "the secret named app, not beneath app/"})
    fetched = LocalSource(tmp_path).fetch("secret/app/")
    assert [path for path, _ in fetched.parts] == [
        "secret/app/api", "secret/app/db", "secret/app/nested/deep/cache"]
    assert fetched.refresh is Refresh.WATCH and fetched.kind == "local folder"
    assert export(tmp_path, "secret/app/", prefix="app_") == {
        "APP_API_KEY": "k-0123", "APP_PASSWORD": "pw-0123", "APP_URL": "redis://cache"}
    # The mount's root: the API layout's data/ is not a folder named data.
    assert [p for p, _ in LocalSource(tmp_path).fetch("secret/").parts] == [
        "secret/app", "secret/app/api", "secret/app/db", "secret/app/nested/deep/cache"]


def test_json_wins_over_toml_and_the_written_layout_over_the_api_one(tmp_path: Path) -> None:
    put(tmp_path, "kv/app/db.toml", {"k": "toml"})
    put(tmp_path, "kv/app/db.json", {"k": "json"})
    put(tmp_path, "kv/data/app/db.json", {"k": "api"})
    assert export(tmp_path, "kv/app/") == {"K": "json"}
    assert LocalSource(tmp_path).fetch("kv/app/db").data["k"].reveal() == "json"


def test_two_secrets_of_a_folder_holding_one_name_fail_naming_both(tmp_path: Path) -> None:
    put(tmp_path, "secret/app/a.json", {"password": "pw-a"})
    put(tmp_path, "secret/app/b/c.json", {"PASSWORD": "pw-b"})
    # The same words as Vault's (tests/e2e/test_vault_folders.py): path order, both named.
    with pytest.raises(ConfigError, match="bulk export: secret/app/b/c#PASSWORD and "
                                          "secret/app/a#password both become variable "
                                          "PASSWORD"):
        export(tmp_path, "secret/app/")
    assert export(tmp_path, "secret/app/", upcase=False) == {"password": "pw-a",
                                                             "PASSWORD": "pw-b"}
    with pytest.raises(ConfigError, match="secret/app/a#password and secret/app/a#password "
                                          "both become variable PASSWORD"):
        export(tmp_path, "secret/app/a", "secret/app/")


def test_a_missing_or_empty_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SecretNotFound, match="folder secret/app/ not found"):
        LocalSource(tmp_path).fetch("secret/app/")
    (tmp_path / "secret/app/sub").mkdir(parents=True)
    with pytest.raises(SecretNotFound, match="no secret under folder secret/app/"):
        LocalSource(tmp_path).fetch("secret/app/")
    with pytest.raises(SecretNotFound, match="a path with data/ after the mount is refused"):
        LocalSource(tmp_path).fetch("secret/data/app/")
    with pytest.raises(ConfigError, match="leaves the local secrets directory"):
        LocalSource(tmp_path).fetch("secret/../../")


def test_a_watched_folder_notices_a_file_anywhere_beneath_it(tmp_path: Path) -> None:
    put(tmp_path, "secret/app/db.json", {"k": "v"})
    source = LocalSource(tmp_path)
    key = SourceKey("vault", "secret/app/")
    seen: list[tuple[str, set[SourceKey]]] = []
    watch = FileWatch(lambda reason, keys, _: seen.append((reason, set(keys))),
                      logging.getLogger("test"))
    watch.add_key(key, source.watched_files(key.path, None))
    # Vault's API layout too, not made yet: a secret put there is a change as well.
    assert watch.trees == {os.path.realpath(tmp_path / "secret/app"): {key},
                           os.path.realpath(tmp_path / "secret/data/app"): {key}}
    watch.changed(os.path.realpath(tmp_path / "secret/app/new/deep.json"))
    watch.changed(os.path.realpath(tmp_path / "secret/apple.json"))  # beside, not beneath
    assert [keys for _, keys in seen] == [{key}]
