"""A folder laid out and updated as Kubernetes' kubelet writes a secret or ConfigMap
volume (its atomic writer): each file is a link ``name -> ..data/name``, ``..data`` a link
to a timestamped folder; an update writes a new folder, renames a new ``..data`` link over
the old one and removes the old folder."""

from __future__ import annotations

import os
from pathlib import Path


class Volume:
    """A folder laid out and updated as the kubelet's atomic writer does."""

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()
        self._write(files)
        for name in files:
            (root / name).symlink_to(f"..data/{name}")

    def _write(self, files: dict[str, str]) -> None:
        self.generation += 1
        folder = self.root / f"..2026_12_02_{self.generation:02d}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        (self.root / "..data_tmp").symlink_to(folder.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")

    def update(self, files: dict[str, str]) -> None:
        old = os.readlink(self.root / "..data")
        self._write(files)
        for name in os.listdir(self.root / old):
            os.unlink(self.root / old / name)
        os.rmdir(self.root / old)
