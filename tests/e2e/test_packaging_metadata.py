"""The package as an index shows it (issue 18.8): the licence as a PEP 639 expression with
its file, classifiers, a README without links that only work in the repository, an sdist
that holds what README names and no tests (they need this repository's servers)."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, run_cli

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", "build", "dist",
                                "*.egg-info", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                ".hypothesis")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(sdist, wheel) built from a copy of the tree (the build writes next to its
    sources) with the setuptools pyproject.toml asks for."""
    base = tmp_path_factory.mktemp("packaging")
    tree = base / "tree"
    shutil.copytree(REPO, tree, ignore=IGNORE)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    backend = base / "backend"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", "--target", str(backend),
                              *requires], capture_output=True, text=True, timeout=300)
    if install.returncode != 0:
        pytest.skip(f"cannot install the build backend {requires}: {install.stderr[-300:]}")
    out = base / "out"
    built: list[Path] = []
    # One process per hook, as build frontends do: setuptools keeps state between them.
    for hook in ("build_sdist", "build_wheel"):
        script = f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))"
        result = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tree,
                                env={"PYTHONPATH": str(backend), "PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, timeout=300, check=True)
        built.append(out / result.stdout.strip().splitlines()[-1])
    sdist, wheel = built
    yield out / sdist, out / wheel


def _metadata(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def test_licence_is_a_pep639_expression_with_its_file(built: tuple[Path, Path]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MPL-2.0" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("Mozilla Public License Version 2.0")
    with zipfile.ZipFile(built[1]) as wheel:
        names = wheel.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = _metadata(wheel.read(info).decode())
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MPL-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    # PEP 639: the expression replaces licence classifiers (setuptools refuses both).
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert meta["Requires-Python"] == ">=3.11"


def test_wheel_holds_only_the_package(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"entrypoint"}


def test_readme_links_work_on_a_package_index() -> None:
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [t for t in targets if not re.match(r"https?://", t)]
    assert not relative, f"README links that only work in the repository: {relative}"
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"`docs/{page.name}`" in section, f"README does not name docs/{page.name}"


def test_project_urls_if_any_are_absolute() -> None:
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("urls", {})
    assert all(re.match(r"https://", u) for u in urls.values()), urls


def test_sdist_holds_what_readme_names_and_no_tests(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[0]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "entrypoint/__main__.py",
                   "examples/quickstart.sh", "examples/sample_app.py",
                   "examples/dev-secrets/kv/app/db.json", "templates/example.toml",
                   "Dockerfile.example"):
        assert needed in names, f"the sdist lacks {needed}"
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_check_warns_of_the_namesake_distribution(tmp_path: Path) -> None:
    """PyPI's 'entrypoint' installs an import package of our name: check says so."""
    site = tmp_path / "site"
    info = site / "entrypoint-2.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entrypoint\nVersion: 2.1.0\n")
    (tmp_path / "sec").mkdir()
    result = run_cli(["check"], {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
                                 "PYTHONPATH": f"{REPO}:{site}"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "environment" in result.stdout and "entrypoint 2.1.0" in result.stdout
    assert "shares the import package entrypoint/" in result.stdout
    clean = run_cli(["check"], {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec")})
    assert "shares the import package" not in clean.stdout
