"""What is watched follows what the outputs read, generation after generation.

The watch list used to be made once, from the first values: a secret a template read
only after an edit was never watched, and ``file()`` in a template was watched where it
led at the start, which in a Kubernetes volume is a timestamped folder that the first
update removes (two updates reached the app, none after them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import backoff
from entrypoint.commands.run import Resident
from entrypoint.config.model import Config, TemplateSpec
from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch
from entrypoint.sources.base import Fetched
from entrypoint.sources.local.folder import LocalSource
from tests.helpers.kube_volume import Volume
from tests.helpers.residents import (
    DEADLINE,
    Make,
    Posted,
    next_restart,
    quiet_config,
)


def put(root: Path, name: str, data: dict[str, str]) -> Path:
    file = root / name
    file.parent.mkdir(parents=True, exist_ok=True)
    replace_text(file, json.dumps(data))
    return file


def replace_text(file: Path, text: str) -> None:
    """At once, as editors and config management write: with wait_min 0, an edit in place
    could be rendered between its truncation and its write (an empty template's restart,
    seen once in a run)."""
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, file)


def file_watch(resident: Resident) -> FileWatch:
    assert resident.rotation is not None
    return resident.rotation.files


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE}s"
        time.sleep(0.02)


def test_file_in_a_template_follows_every_update_of_a_kubernetes_volume(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """``file('/vol/tls.crt')``: each certificate rotation reaches the app."""
    volume = Volume(tmp_path / "vol", {"tls.crt": "cert-1"})
    template = tmp_path / "app.tmpl"
    template.write_text("{{ file('" + str(volume.root / "tls.crt") + "') }}\n")
    out = tmp_path / "app.conf"
    config = quiet_config(template=[TemplateSpec(destination=out, source=template)],
                          template_allowed_dirs=[str(volume.root)])
    resident_for(config, {}).prepare()
    assert out.read_text() == "cert-1\n"
    for n in range(2, 6):
        volume.update({"tls.crt": f"cert-{n}"})
        next_restart(posted)
        wait_for(lambda: out.read_text() == f"cert-{n}\n", f"cert-{n} in {out}")  # noqa: B023


def test_file_from_a_template_in_a_kubernetes_volume_is_read_by_a_path_that_stays(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """``file('tls.crt')`` from a template in the same ConfigMap: read through the
    volume's ``..data``, not the timestamped folder the template led to at a render,
    which made a new secret at each update (the generation kept every old one)."""
    text = {"app.tmpl": "{{ file('tls.crt') }}\n"}
    volume = Volume(tmp_path / "vol", {"tls.crt": "cert-1", **text})
    out = tmp_path / "app.conf"
    config = quiet_config(template=[TemplateSpec(destination=out,
                                                 source=volume.root / "app.tmpl")],
                          template_allowed_dirs=[str(volume.root)])
    resident = resident_for(config, {})
    resident.prepare()
    watch = file_watch(resident)
    stable = {SourceKey("file", f"{volume.root}/..data/tls.crt")}
    assert set(watch.key_paths) == stable
    for n in range(2, 4):
        volume.update({"tls.crt": f"cert-{n}", **text})
        next_restart(posted)
        wait_for(lambda: out.read_text() == f"cert-{n}\n", f"cert-{n} in {out}")  # noqa: B023
    assert set(watch.key_paths) == stable
    assert resident.rotation is not None and resident.rotation.engine.resolution is not None
    assert {key for key in resident.rotation.engine.resolution.generation.fetched
            if key.scheme == "file"} == stable


class EditedAfterFirstRead(LocalSource):
    """The local directory, with ``path``'s file edited right after its first read: as
    if edited before the watch heard of it."""

    def __init__(self, root: Path, path: str, edit: dict[str, str]) -> None:
        super().__init__(root)
        self.path, self.edit = path, edit

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        fetched = super().fetch(path, version)
        if path == self.path and self.edit:
            put(self.root, f"{path}.json", self.edit)
            self.edit = {}
        return fetched


def reading_kv_a(tmp_path: Path) -> tuple[Path, Path, Config]:
    """Secrets kv/a (a1) and kv/b (b1) under ``secrets``; a template that reads kv/a; its
    output file; the config that renders it."""
    put(tmp_path, "secrets/kv/a.json", {"x": "a1"})
    put(tmp_path, "secrets/kv/b.json", {"x": "b1"})
    template = tmp_path / "app.tmpl"
    template.write_text("{{ secret('kv/a').x }}\n")
    out = tmp_path / "app.conf"
    return template, out, quiet_config(
        template=[TemplateSpec(destination=out, source=template)])


def test_a_secret_first_read_after_the_start_is_watched_and_one_left_is_not(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    template, out, config = reading_kv_a(tmp_path)
    resident = resident_for(config, {}, LocalSource(tmp_path / "secrets"))
    resident.prepare()
    watch = file_watch(resident)
    assert set(watch.key_paths) == {SourceKey("vault", "kv/a")}
    replace_text(template, "{{ secret('kv/b').x }}\n")
    next_restart(posted)
    assert out.read_text() == "b1\n"
    # kv/a is still carried in the generation, but nothing reads it: not watched.
    wait_for(lambda: set(watch.key_paths) == {SourceKey("vault", "kv/b")}, "kv/b watched")
    put(tmp_path, "secrets/kv/b.json", {"x": "b2"})
    assert "kv/b.json changed" in next_restart(posted).reason
    assert out.read_text() == "b2\n"


def test_a_secret_edited_between_its_first_read_and_its_watch_is_read_again(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    template, out, config = reading_kv_a(tmp_path)
    source = EditedAfterFirstRead(tmp_path / "secrets", "kv/b", {"x": "b2"})
    resident_for(config, {}, source).prepare()
    replace_text(template, "{{ secret('kv/b').x }}\n")  # kv/b read (b1), then edited (b2)
    next_restart(posted)
    assert "kv/b changed before its watch started" in next_restart(posted).reason
    assert out.read_text() == "b2\n"


def test_a_secret_taken_up_again_is_read_afresh_not_rendered_stale_first(
        tmp_path: Path, resident_for: Make, posted: Posted) -> None:
    """kv/a, left unwatched while no output read it, is edited then; when the template
    reads it again, that rotation renders the edit. It used to render the value carried
    since kv/a was left (a1), then restart a second time once the new watch read a2."""
    template, out, config = reading_kv_a(tmp_path)
    resident = resident_for(config, {}, LocalSource(tmp_path / "secrets"))
    resident.prepare()
    watch = file_watch(resident)
    replace_text(template, "{{ secret('kv/b').x }}\n")
    next_restart(posted)
    wait_for(lambda: set(watch.key_paths) == {SourceKey("vault", "kv/b")}, "kv/b watched")
    put(tmp_path, "secrets/kv/a.json", {"x": "a2"})  # not watched: nothing reaches the app
    replace_text(template, "{{ secret('kv/a').x }}\n")
    restart = next_restart(posted)
    assert out.read_text() == "a2\n"
    assert "app.tmpl changed" in restart.reason and "kv/a" not in restart.reason
    wait_for(lambda: set(watch.key_paths) == {SourceKey("vault", "kv/a")}, "kv/a watched")
    put(tmp_path, "secrets/kv/a.json", {"x": "a3"})
    assert "kv/a.json changed" in next_restart(posted).reason
    assert out.read_text() == "a3\n"


def test_a_secret_a_failing_template_did_not_find_is_rendered_once_made(
        tmp_path: Path, resident_for: Make, posted: Posted,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The template is edited to read kv/new, which is not there yet: it fails and keeps
    its last good file. kv/new's files are watched, so making it renders the template at
    once, as consul-template does; it used to wait for the retry's backoff (up to 30 s).
    The retry is put an hour away here: only the watch can render it in time."""
    monkeypatch.setattr(backoff, "RUNNING_BASE", 3600.0)
    monkeypatch.setattr(backoff, "RUNNING_CAP", 3600.0)
    template, out, config = reading_kv_a(tmp_path)
    resident = resident_for(config, {}, LocalSource(tmp_path / "secrets"))
    resident.prepare()
    assert resident.rotation is not None
    resident.rotation.engine.rng = lambda: 0.99
    watch = file_watch(resident)
    new = SourceKey("vault", "kv/new")
    replace_text(template, "{{ secret('kv/new').x }}\n")
    wait_for(lambda: new in watch.key_paths, "kv/new, not found, watched")
    assert out.read_text() == "a1\n"  # its last good file
    put(tmp_path, "secrets/kv/new.json", {"x": "n1"})
    assert "kv/new.json changed" in next_restart(posted).reason
    assert out.read_text() == "n1\n"
    wait_for(lambda: set(watch.key_paths) == {new}, "kv/new watched, kv/a no longer")
