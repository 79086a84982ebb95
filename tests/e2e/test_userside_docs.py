"""The users' documentation cannot drift from the code.

- ``--help`` of every subcommand, as users run it, lists every setting, and every flag it
  shows is in docs/configuration.md (tests/unit/test_docs.py checks the parser objects; this
  checks what a user sees from ``python -m entrypoint SUB --help``).
- Every ``ENTRYPOINT_*`` variable and ``--flag`` the docs mention exists.
- Every error message the code can stop with, and every warning it logs, is in
  docs/troubleshooting.md.
- README's Documentation section names every page; every relative link resolves.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import errors
from entrypoint.cli import SUBCOMMANDS, build_parser
from entrypoint.commands.help import settings_for
from entrypoint.config.bootstrap import BOOTSTRAP_VARIABLES
from entrypoint.config.settings import BY_VARIABLE, SETTINGS
from tests.helpers.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
QUICKSTART = DOCS / "quickstart.md"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
MIGRATIONS = ("envconsul", "consul-template", "vault-agent", "vault-env")
# Placeholders the docs use on purpose (an example of a typo, "some variable").
PLACEHOLDER_VARIABLES = {"ENTRYPOINT_X", "ENTRYPOINT_Y"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def run_help(sub: str) -> str:
    result = run_cli([sub, "--help"], cwd=ROOT, clean=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


# -- --help -------------------------------------------------------------------------------

@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand_is_complete_and_documented(sub: str) -> None:
    text = run_help(sub)
    assert text.startswith(f"usage: {build_parser(sub).usage}")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) - {"--help"}
    if sub in ("version", "help"):
        assert flags == set()
        return
    for setting in settings_for(sub):  # only what the subcommand reads (issue 18.6)
        assert setting.flag in flags, f"entrypoint {sub} --help does not show {setting.flag}"
        assert setting.variable in text, f"entrypoint {sub} --help does not name {setting.variable}"
    documented = read(CONFIGURATION)
    for flag in sorted(flags):
        assert f"`{flag}" in documented, f"entrypoint {sub} --help shows {flag}, which " \
            "docs/configuration.md does not document"


def test_quickstart_lists_every_subcommand_with_its_usage() -> None:
    text = read(QUICKSTART)
    section = text.split("## Subcommands", 1)
    assert len(section) == 2, "docs/quickstart.md needs a '## Subcommands' section"
    body = section[1].split("\n## ", 1)[0]
    for sub in SUBCOMMANDS:
        assert f"| `{sub}`" in body, f"quickstart's Subcommands table misses {sub}"
        usage = build_parser(sub).usage
        assert usage is not None and usage in body, f"quickstart misses the usage of {sub}"
    for flag in ("--exec", "--reveal", "--format"):
        assert flag in body


# -- names the docs mention ---------------------------------------------------------------

def test_every_variable_the_docs_mention_is_a_setting() -> None:
    sources = [*pages(), ROOT / "README.md", ROOT / "Dockerfile.example",
               *(ROOT / "examples").rglob("*.yml"), *(ROOT / "examples").rglob("*.sh")]
    seen = 0
    for path in sources:
        for name in re.findall(r"\bENTRYPOINT_[A-Z][A-Z0-9_]*\b", read(path)):
            seen += 1
            assert name in BY_VARIABLE or name in PLACEHOLDER_VARIABLES, (
                f"{path.relative_to(ROOT)} mentions {name}, which is no setting")
    assert seen > 50


def test_every_flag_the_docs_mention_exists() -> None:
    flags = {flag for sub in SUBCOMMANDS for action in build_parser(sub)._actions
             for flag in action.option_strings}
    seen = 0
    for path in pages():
        for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", read(path)):
            seen += 1
            assert flag in flags, f"{path.relative_to(ROOT)} mentions {flag}, which no " \
                "subcommand has"
    assert seen > 50


def test_security_names_every_bootstrap_variable() -> None:
    text = read(DOCS / "security.md")
    for name in sorted(BOOTSTRAP_VARIABLES):
        assert f"`{name}`" in text, f"security.md does not say {name} is stripped"
    assert "`ENTRYPOINT_*`" in text


# -- troubleshooting ----------------------------------------------------------------------

def _error_classes() -> set[str]:
    names = {name for name, value in vars(errors).items()
             if isinstance(value, type) and issubclass(value, errors.EntrypointError)}
    for path in (ROOT / "entrypoint").rglob("*.py"):
        for node in ast.walk(ast.parse(read(path))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id in names for b in node.bases):
                names.add(node.name)
    return names


def _fragments(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        pieces = [node.value]
    elif isinstance(node, ast.JoinedStr):
        pieces = [v.value for v in node.values
                  if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    elif isinstance(node, ast.BinOp):
        return _fragments(node.left) + _fragments(node.right)
    else:
        return []
    # %-style log placeholders split a message as f-string fields do.
    return [part.strip(" :;,()\n") for piece in pieces
            for part in re.split(r"%[-.\d]*[a-z]", piece)]


def messages() -> list[tuple[str, int, str]]:
    """(file, line, the longest fixed part) of every error raised and warning logged."""
    classes = _error_classes()
    out = []
    for path in sorted((ROOT / "entrypoint").rglob("*.py")):
        for node in ast.walk(ast.parse(read(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else "")
            is_log = isinstance(func, ast.Attribute) and name in ("warning", "error")
            if name not in classes and not is_log:
                continue
            parts = [p for p in _fragments(node.args[0]) if len(p) >= 8]
            if parts:
                out.append((str(path.relative_to(ROOT)), node.lineno, max(parts, key=len)))
    return out


def test_the_message_finder_finds_messages() -> None:
    found = {text for _, _, text in messages()}
    assert "no command to run" in found
    assert "the app keeps the last good values; retry in" in found
    assert len(found) > 80


def test_every_message_is_in_troubleshooting() -> None:
    text = read(TROUBLESHOOTING)
    missing = [f"{file}:{line}: {fragment!r}" for file, line, fragment in messages()
               if fragment not in text]
    assert not missing, "docs/troubleshooting.md does not explain:\n" + "\n".join(missing)


def test_troubleshooting_has_a_section_per_exit_code() -> None:
    text = read(TROUBLESHOOTING)
    codes = {v for k, v in vars(errors).items() if k.startswith("EX_")}
    for code in sorted(codes):
        assert re.search(rf"^## .*\b{code}\b", text, re.M), f"no section for exit {code}"


# -- rotation -----------------------------------------------------------------------------

def test_rotation_has_the_mermaid_timeline_and_every_setting() -> None:
    text = read(DOCS / "rotation.md")
    mermaid = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert mermaid, "rotation.md needs a Mermaid diagram"
    diagram = mermaid.group(1).lower()
    order = [diagram.find(word) for word in ("renew", "replace", "signal", "revoke")]
    assert -1 not in order and order == sorted(order), "renew → replace → act → revoke"
    for name in ("renew_fraction", "replace_fraction", "revoke_grace", "wait_min", "wait_max",
                 "splay", "on_expiry", "lease_check_interval", "poll_interval"):
        assert f"`{name}`" in text, f"rotation.md does not explain {name}"
        default = next(s.default for s in SETTINGS if s.name == name)
        assert name in text.split("## Settings", 1)[1], name
        assert default is not None


# -- migration guides ---------------------------------------------------------------------

@pytest.mark.parametrize("peer", MIGRATIONS)
def test_migration_guides_map_option_by_option(peer: str) -> None:
    text = read(DOCS / f"migrating-from-{peer}.md")
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("|---")]
    three = [r for r in rows if len(re.findall(r"(?<!\\)\|", r)) >= 4]
    assert len(three) >= 20, f"{peer}: expected an option-by-option table"
    ours = " ".join(r.split("|")[2] for r in three)
    assert re.search(r"--[a-z]|ENTRYPOINT_|VAULT_", ours)


# -- README and links ---------------------------------------------------------------------

def test_readme_documentation_section_links_every_page() -> None:
    readme = read(ROOT / "README.md")
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    for page in pages():
        # Named as text, not linked: a relative link is broken on a package index.
        assert f"`docs/{page.name}`" in section, f"README does not name docs/{page.name}"


def test_every_relative_link_resolves() -> None:
    for path in [*pages(), ROOT / "README.md", *(ROOT / "examples").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(path)):
            if re.match(r"[a-z]+:", target):
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} -> {target}"


def test_the_quickstart_local_folder_commands_work() -> None:
    """Section 2 of docs/quickstart.md, run as written (with this interpreter)."""
    section = read(QUICKSTART).split("## 2.", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    script = "set -e\n" + re.sub(r"^entrypoint ", f"{sys.executable} -m entrypoint ", block,
                                  flags=re.M)
    from tests.helpers.cli import clean_env

    result = subprocess.run(["sh", "-c", script], cwd=ROOT, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "API_TOKEN=<redacted>" in result.stdout
    assert "DATABASE_URL=<redacted>" in result.stdout
    assert re.search(r"API_TOKEN +15 characters", result.stdout)
    assert "bootstrap variables visible to the app: none" in result.stdout
    assert "local-api-token" not in result.stdout + result.stderr


def test_every_vault_and_consul_variable_we_claim_is_read_by_the_code() -> None:
    """VAULT_* and CONSUL_* names in the docs are read somewhere in entrypoint/ (in the
    migration guides, only the entrypoint's column: the first is the other tool's)."""
    code = "\n".join(read(p) for p in (ROOT / "entrypoint").rglob("*.py"))
    pattern = re.compile(r"\b(?:VAULT|CONSUL)_[A-Z][A-Z_]*\b")
    claimed: set[tuple[str, str]] = set()
    for path in pages():
        if path.name == "testing.md":
            continue  # the test harness's variables (VAULT_BIN...): read by tests/realservers
        text = read(path)
        if path.name.startswith("migrating-from-"):
            cells = [row.split("|")[2] for row in text.splitlines()
                     if row.startswith("| ") and len(row.split("|")) > 3]
            text = "\n".join(cells)
        claimed |= {(path.name, name) for name in pattern.findall(text)}
    assert len(claimed) > 20
    missing = sorted(f"{page}: {name}" for page, name in claimed if name not in code)
    assert not missing, "the docs name variables the code never reads:\n" + "\n".join(missing)
