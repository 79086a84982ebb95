"""A watched path that is plain at the start and later replaced by a symbolic link
(``ln -sfn app.prod.json app.json``; ``rm -rf kv/app && ln -s ../other/app kv/app``).
Only paths that went through a link at the start were followed, events were looked up
by where paths led at the start, and a folder that became a link was watched as the link
itself (watchdog's IN_DONT_FOLLOW): the swap and every edit after it went unseen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from entrypoint.plan.keys import SourceKey
from entrypoint.rotation.file_watch import FileWatch
from tests.helpers.file_notices import RELINKED, Seen, drain, next_notice


def test_a_plain_file_replaced_by_a_link_is_followed(
        tmp_path: Path, watch: FileWatch, seen: Seen) -> None:
    key = SourceKey("vault", "app")
    (tmp_path / "app.json").write_text('{"k": "dev"}')
    (tmp_path / "app.prod.json").write_text('{"k": "prod"}')
    watch.add_key(key, [tmp_path / "app.json"])
    watch.start()
    (tmp_path / ".next").symlink_to("app.prod.json")
    os.replace(tmp_path / ".next", tmp_path / "app.json")  # ln -sfn, atomically
    next_notice(seen, key, RELINKED)
    drain(seen)
    (tmp_path / "app.prod.json").write_text('{"k": "prod2"}')  # what app.json is now
    next_notice(seen, key, "app.prod.json changed")


@pytest.mark.parametrize("attempt", range(3))  # the swap races the folder's removal event
def test_a_plain_folder_replaced_by_a_link_is_followed(
        tmp_path: Path, watch: FileWatch, seen: Seen, attempt: int) -> None:
    key = SourceKey("vault", "kv/app/")
    (tmp_path / "kv/app").mkdir(parents=True)
    (tmp_path / "kv/app/db.json").write_text("{}")
    (tmp_path / "other/app").mkdir(parents=True)
    (tmp_path / "other/app/db.json").write_text('{"k": 1}')
    watch.add_key(key, [tmp_path / "kv/app"])
    watch.start()
    shutil.rmtree(tmp_path / "kv/app")
    (tmp_path / "kv/app").symlink_to(tmp_path / "other/app")
    next_notice(seen, key, RELINKED)
    drain(seen)
    (tmp_path / "other/app/db.json").write_text('{"k": 2}')  # kv/app/db.json, now
    next_notice(seen, key, "other/app/db.json changed")
    assert watch.trees == {str(tmp_path / "other/app"): {key}}
