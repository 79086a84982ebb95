"""An edit made after a file's first read and before its watch started has no event of
its own: the resident reads the watched files again once the watch is up. Each test makes
the edit at exactly that moment (right after the read, right after the render) and waits
for the app's restart on the new value, which without the second read never comes."""

from __future__ import annotations

import json
import logging
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.commands import run
from entrypoint.config.model import TemplateSpec
from entrypoint.sources.base import Fetched
from entrypoint.sources.local.folder import LocalSource
from tests.helpers.residents import (
    DEADLINE,
    Make,
    next_restart,
    quiet_config,
)


def put(root: Path, name: str, data: dict[str, str]) -> Path:
    file = root / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data))
    return file


class EditedRightAfterRead(LocalSource):
    """The local directory, with the secret's file edited just after its first read."""

    def __init__(self, root: Path, edit: dict[str, str] | None) -> None:
        super().__init__(root)
        self.edit = edit
        self.reads = 0

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        fetched = super().fetch(path, version)
        self.reads += 1
        if self.edit is not None:
            put(self.root, f"{path.rstrip('/')}.json", self.edit)
            self.edit = None
        return fetched


def test_a_secret_edited_between_its_read_and_the_watch_start_restarts_the_app(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object]) -> None:
    put(tmp_path, "secret/app.json", {"k": "old"})
    source = EditedRightAfterRead(tmp_path, edit={"k": "new"})
    resident = resident_for(quiet_config(), {"A": "vault:secret/app#k"}, source)
    assert resident.prepare()["A"] == "old"
    restart = next_restart(posted)
    assert restart.env["A"] == "new"
    assert "secret/app changed before its watch started" in restart.reason


def test_an_unchanged_secret_is_read_once_more_and_restarts_nothing(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object]) -> None:
    put(tmp_path, "secret/app.json", {"k": "same"})
    source = EditedRightAfterRead(tmp_path, edit=None)
    resident = resident_for(quiet_config(), {"A": "vault:secret/app#k"}, source)
    assert resident.prepare()["A"] == "same"
    assert source.reads == 2  # the first read, and the one after the watch started
    # The engine acts on a change at once (wait 0); an edit now still restarts, so the
    # queue being empty before it says the second read found nothing to act on.
    put(tmp_path, "secret/app.json", {"k": "later"})
    restart = next_restart(posted)
    assert restart.env["A"] == "later" and "before its watch started" not in restart.reason


def test_a_secret_deleted_before_the_watch_start_keeps_the_app_on_its_values(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object],
        caplog: pytest.LogCaptureFixture) -> None:
    put(tmp_path, "secret/app.json", {"k": "old"})

    class DeletedRightAfterRead(EditedRightAfterRead):
        def fetch(self, path: str, version: int | None = None) -> Fetched:
            fetched = super().fetch(path, version)
            (self.root / "secret/app.json").unlink(missing_ok=True)
            return fetched

    source = DeletedRightAfterRead(tmp_path, edit=None)
    resident = resident_for(quiet_config(), {"A": "vault:secret/app#k"}, source)
    with caplog.at_level(logging.WARNING, logger="entrypoint"):
        assert resident.prepare()["A"] == "old"
        deadline = time.monotonic() + DEADLINE
        while "could not fetch new values" not in caplog.text:
            assert time.monotonic() < deadline, "the deletion was never noticed"
            time.sleep(0.02)
    assert "the app keeps the last good values" in caplog.text
    assert posted.empty()


def test_a_secret_added_to_a_watched_folder_before_the_watch_start_restarts_the_app(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object]) -> None:
    put(tmp_path, "kv/app/b.json", {"B": "b"})

    class AddedRightAfterRead(EditedRightAfterRead):
        def fetch(self, path: str, version: int | None = None) -> Fetched:
            fetched = super().fetch(path, version)
            if self.reads == 1:
                put(self.root, "kv/app/c.json", {"C": "c"})
            return fetched

    source = AddedRightAfterRead(tmp_path, edit=None)
    resident = resident_for(quiet_config(secrets=["kv/app/"]), {}, source)
    assert "C" not in resident.prepare()
    restart = next_restart(posted)
    assert (restart.env["B"], restart.env["C"]) == ("b", "c")
    assert "kv/app/ changed before its watch started" in restart.reason


def test_any_failure_of_the_second_read_is_left_to_the_engine_not_the_start(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object]) -> None:
    """A folder's read can fail with a bare OSError (a subfolder removed during the walk):
    the start goes on, and the engine's own read reports what is wrong."""
    put(tmp_path, "secret/app.json", {"k": "v"})

    class FailsTheSecondTime(EditedRightAfterRead):
        def fetch(self, path: str, version: int | None = None) -> Fetched:
            if self.reads == 1:
                self.reads += 1
                raise FileNotFoundError(2, "No such file or directory")
            return super().fetch(path, version)

    source = FailsTheSecondTime(tmp_path, edit=None)
    resident = resident_for(quiet_config(), {"A": "vault:secret/app#k"}, source)
    assert resident.prepare()["A"] == "v"
    deadline = time.monotonic() + DEADLINE
    while source.reads < 3:  # the engine read it again, and found the same value
        assert time.monotonic() < deadline, "the engine never read it again"
        time.sleep(0.02)
    assert posted.empty()


def test_answers_compare_a_folders_parts_as_the_poll_does() -> None:
    from entrypoint.secret import Secret

    one = Fetched(data={"X": Secret("v")}, kind="local", parts=(("kv/app/b", {"X": Secret("v")}),))
    moved = Fetched(data={"X": Secret("v")}, kind="local",
                    parts=(("kv/app/c", {"X": Secret("v")}),))
    assert one.answers_as(Fetched(data={"X": Secret("v")}, kind="local", parts=one.parts))
    assert not one.answers_as(moved)
    assert not one.answers_as(Fetched(data={"X": Secret("v")}, kind="local", version=2,
                                      parts=one.parts))


def test_a_template_edited_between_the_render_and_the_watch_start_is_rendered_again(
        tmp_path: Path, resident_for: Make, posted: queue.SimpleQueue[object],
        monkeypatch: pytest.MonkeyPatch) -> None:
    put(tmp_path, "secret/app.json", {"k": "v"})
    template = tmp_path / "app.tmpl"
    template.write_text("first {{ secret('secret/app').k }}\n")
    out = tmp_path / "app.conf"
    render_outputs = run.render_outputs

    first_render: list[str] = []

    def render_then_edit(*args: Any) -> Any:
        changed = render_outputs(*args)
        first_render.append(out.read_text())
        template.write_text("second {{ secret('secret/app').k }}\n")
        return changed

    monkeypatch.setattr(run, "render_outputs", render_then_edit)
    config = quiet_config(template=[TemplateSpec(destination=out, source=template)],
                          template_allowed_dirs=[str(tmp_path)])
    resident = resident_for(config, {}, EditedRightAfterRead(tmp_path, edit=None))
    resident.prepare()
    assert first_render == ["first v\n"]
    restart = next_restart(posted)  # a changed file with on_change "restart"
    assert out.read_text() == "second v\n"
    assert f"template {template} changed before its watch started" in restart.reason
