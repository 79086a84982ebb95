"""``render`` and ``check`` take, as flags, every setting they read; a usage error points
to the help of the subcommand it was made in.

Found by an audit: ``render --transit-key app`` was refused (``unrecognized arguments``,
64) while ``ENTRYPOINT_TRANSIT_KEY=app`` worked, since ``commands/help.py`` left the
transit settings out of what render and check read; and the hint said ``see 'entrypoint
--help'`` whatever the subcommand.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from entrypoint.commands.help import USED_BY
from entrypoint.config.settings import BY_NAME
from tests.helpers.cli import run_cli

ROOT = Path(__file__).resolve().parents[2] / "entrypoint"
# What render and check run: resolving, the sources, the templates.
RESOLVING = [*sorted((ROOT / "plan").glob("*.py")), *sorted((ROOT / "render").glob("*.py")),
             *sorted((ROOT / "sources").rglob("*.py")),
             *(ROOT / "commands" / name for name in ("render.py", "check.py",
                                                      "check_templates.py"))]
# Settings that code reads but that cannot change what render or check do, and why.
NO_EFFECT = {
    # The Vault source reads them for what it gives back at close: render keeps its token
    # and leases (keep_on_close), check revokes them (vault/preflight.py), whatever they say.
    "mode": "render check",
    "revoke_on_exit": "render check",
    # Renders after start only (render/outputs.py, for the rotation engine).
    "template_error_on_refresh": "render check",
    # check builds its sources without issue_cache_dir (commands/check.py).
    "issue_cache_dir": "check",
    "replace_fraction": "check",
}


def settings_read_by_resolving() -> set[str]:
    """Every setting read as ``config.NAME`` or ``self.config.NAME`` there."""
    names: set[str] = set()
    for path in RESOLVING:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in BY_NAME and \
                    ast.unparse(node.value).endswith("config"):
                names.add(node.attr)
    return names


def test_the_finder_finds_what_is_read() -> None:
    assert {"transit_key", "vault_role", "template_timeout", "local_secrets"} <= (
        settings_read_by_resolving())


@pytest.mark.parametrize("sub", ["render", "check"])
def test_every_setting_resolving_reads_is_an_option(sub: str) -> None:
    used = USED_BY[sub]
    assert used is not None
    read = {name for name in settings_read_by_resolving()
            if sub not in NO_EFFECT.get(name, "")}
    assert read - used == set(), f"{sub} reads these but refuses them as flags"


@pytest.fixture
def transit_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "enc").mkdir(parents=True)
    (root / "enc/app.json").write_text(json.dumps({"vault:v1:c2VjcmV0": "plain-Tr4n5it-value"}))
    return root


def test_render_and_check_take_the_transit_flags(transit_dir: Path) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(transit_dir), "SECRET": "vault:v1:c2VjcmV0"}
    flags = ["--transit-key", "app", "--transit-mount", "enc"]
    render = run_cli(["render", "--reveal", "--format", "json", *flags], env)
    assert render.returncode == 0, render.stderr
    assert json.loads(render.stdout) == {"SECRET": "plain-Tr4n5it-value"}
    check = run_cli(["check", *flags], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "plain-Tr4n5it-value" not in check.stdout + check.stderr


def test_render_takes_the_issue_cache_flags(transit_dir: Path, tmp_path: Path) -> None:
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(transit_dir)}
    result = run_cli(["render", "--issue-cache-dir", str(tmp_path),
                      "--replace-fraction", "0.5"], env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("args", "prog"), [
    (["render", "--no-such-flag"], "entrypoint render"),
    (["render", "stray"], "entrypoint render"),  # no command to put after --
    (["check", "--kill-timeout", "3s"], "entrypoint check"),  # a setting of run only
    (["status", "--transit-key", "app"], "entrypoint status"),
    (["--no-such-flag"], "entrypoint"),
    (["run", "--no-such-flag"], "entrypoint"),
])
def test_a_usage_error_points_to_its_subcommands_help(args: list[str], prog: str) -> None:
    result = run_cli(args)
    assert result.returncode == 64
    assert f"{prog}: unrecognized arguments: " in result.stderr
    assert f"(see '{prog} --help')" in result.stderr
