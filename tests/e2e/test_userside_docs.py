"""The users' documentation cannot drift from the code.

- ``--help`` of every subcommand, as users run it, lists every setting, and every flag it
  shows is in docs/configuration.md (tests/unit/test_docs.py checks the parser objects; this
  checks what a user sees from ``python -m entrypoint SUB --help``).
- Every ``ENTRYPOINT_*`` variable and ``--flag`` the docs mention exists.
- Every error message the code can stop with, every warning or error it logs and every
  text a process exits with is in docs/troubleshooting.md; and every message troubleshooting
  quotes in its tables is one the code can still give.
- README's Documentation section names every page; every relative link resolves.
"""

from __future__ import annotations

import ast
import functools
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


@functools.cache
def _trees(path: Path) -> list[tuple[ast.AST, int]]:
    """The module, and the Python code in its strings that a child interpreter runs
    (``python -c CODE``: process/hardening.py), each with the line it starts at."""
    tree = ast.parse(read(path))
    out: list[tuple[ast.AST, int]] = [(tree, 0)]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and ("sys.exit(" in node.value.value or "sys.stderr.write(" in node.value.value)):
            out.append((ast.parse(node.value.value), node.lineno - 1))
    return out


_LOUD = {"WARNING", "ERROR", "CRITICAL"}


def _message_of(node: ast.Call, classes: set[str]) -> ast.expr | None:
    """What a user reads of this call: the message of an error raised, of a line logged at
    warning or above (``warning``, ``error``, ``exception``, ``critical``, ``log(WARNING, ...)``),
    a ``sys.exit`` text or a ``sys.stderr.write``; None for any other call."""
    func, args = node.func, node.args
    if isinstance(func, ast.Name):
        return args[0] if func.id in classes and args else None
    if not isinstance(func, ast.Attribute) or not args:
        return None
    owner = ast.unparse(func.value)
    if func.attr in classes or func.attr in ("warning", "error", "exception", "critical"):
        return args[0]
    if func.attr == "log" and len(args) > 1 and _LOUD & {
            n.attr if isinstance(n, ast.Attribute) else n.id
            for n in ast.walk(args[0]) if isinstance(n, ast.Attribute | ast.Name)}:
        return args[1]
    if (func.attr, owner) in (("exit", "sys"), ("write", "sys.stderr")):
        return args[0]
    return None


def messages() -> list[tuple[str, int, str]]:
    """(file, line, the longest fixed part) of every message a user can read: errors
    raised, warnings and errors logged, texts a process exits or fails with."""
    classes = _error_classes()
    out = []
    for path in sorted((ROOT / "entrypoint").rglob("*.py")):
        for tree, offset in _trees(path):
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                message = _message_of(node, classes)
                parts = [p for p in _fragments(message) if len(p) >= 8] if message else []
                if parts:
                    out.append((str(path.relative_to(ROOT)), offset + node.lineno,
                                max(parts, key=len)))
    return out


def test_the_message_finder_finds_messages() -> None:
    found = {text for _, _, text in messages()}
    assert "no command to run" in found
    assert "the app keeps the last good values; retry in" in found
    assert "rotation engine error; it keeps running" in found  # log.exception
    assert "entrypoint: cannot set the parent-death signal" in found  # sys.exit in a -c
    assert "entrypoint: cannot switch to uid" in found  # sys.stderr.write in a -c
    assert len(found) > 80
    calls = [ast.parse(code).body[0].value for code in (  # type: ignore[attr-defined]
        "log.log(logging.INFO if ok else logging.WARNING, 'a message')",
        "log.log(logging.DEBUG, 'a message')", "sys.exit('a message')", "sys.exit(2)")]
    assert [_message_of(call, set()) is not None for call in calls] == [True, False, True, True]


def test_every_message_is_in_troubleshooting() -> None:
    text = read(TROUBLESHOOTING)
    missing = [f"{file}:{line}: {fragment!r}" for file, line, fragment in messages()
               if fragment not in text]
    assert not missing, "docs/troubleshooting.md does not explain:\n" + "\n".join(missing)


# The reverse: a message troubleshooting quotes is one the code can still give. A quote is
# read as words and punctuation in which an UPPER-CASE word (PATH, N, the T of Ts), a word
# holding one (vault:PATH, code=N) and ... or … stand for anything; each stretch of it
# between ": ", "; " and parentheses, if it has three words or more, must be read off one
# string of entrypoint/ (a literal, an f-string, a %-format), where each field stands for
# anything too, with at least half of its words matched word for word.
_WILD = "\0"
_TOKEN = re.compile(r"\0|[a-z0-9_]+(?:-[a-z0-9_]+)*|[^\sa-z0-9_\0()]")
_PLACEHOLDER = re.compile(r"(?<![A-Za-z])(?:[A-Z][A-Z0-9_]+(?:-[A-Z0-9]+)*(?![a-z])"
                          r"|[A-Z](?=s?(?![A-Za-z])))")
_WORD = re.compile(r"[^\s'\"(]*[^\s'\",;:.?)]")
# Quotes the reading above cannot check, with why.
UNCHECKED_QUOTES = {
    "(expected one of vault, consul, file, transit)":
        "joined from refs.SCHEMES: see test_troubleshooting_names_every_reference_scheme",
    "issue at PATH refused: common name X not allowed by this role":
        "Vault's own words, as the row says",
    "allow_bare_domains=…": "the role's flags, named by a loop over them",
    "Address already in use": "the OS's words (EADDRINUSE)",
    "--help')": "argparse's words, the hint built from the parser's prog (cli.py, help.py)",
    "inotify watch limit reached": "watchdog's words",
}


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))


def _is_word(token: str) -> bool:
    return len(token) > 1 and token[0].isalnum()


@functools.cache
def _code_strings() -> tuple[list[tuple[str, ...]], dict[str, set[int]]]:
    """Every string of entrypoint/ but docstrings, fields as _WILD; and which hold a token."""
    strings: list[tuple[str, ...]] = []
    for path in sorted((ROOT / "entrypoint").rglob("*.py")):
        for tree, _ in _trees(path):
            docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
            for node in ast.walk(tree):
                if id(node) in docstrings:
                    continue
                if isinstance(node, ast.JoinedStr):
                    text = "".join(str(v.value) if isinstance(v, ast.Constant) else _WILD
                                   for v in node.values)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = re.sub(r"%[-.\d]*[a-z]", _WILD, node.value)
                else:
                    continue
                tokens = _tokens(text)
                if any(map(_is_word, tokens)):
                    strings.append(tokens)
    holding: dict[str, set[int]] = {}
    for k, tokens in enumerate(strings):
        for token in tokens:
            holding.setdefault(token, set()).add(k)
    return strings, holding


def _stretches(quote: str) -> list[tuple[str, ...]]:
    """A quote's text outside parentheses and in each, cut at ": " and "; "."""
    quote = re.sub(r"\.\.\.|…", _WILD, quote.replace("\\|", "|"))
    stack: list[list[str]] = [[]]
    groups = []
    for char in quote:
        if char == "(":
            stack.append([])
        elif char == ")" and len(stack) > 1:
            groups.append("".join(stack.pop()))
            stack[-1].append(_WILD)
        else:
            stack[-1].append(char)
    groups += ["".join(chars) for chars in stack]
    return [_tokens(_WORD.sub(lambda m: _WILD if _PLACEHOLDER.search(m[0]) else m[0], piece))
            for group in groups for piece in re.split(r"[:;] ", group)]


def _matched(doc: tuple[str, ...], code: tuple[str, ...]) -> int:
    """The most words of ``doc`` matched word for word when all of it is read as a stretch
    of ``code`` (a _WILD of either side standing for any tokens of the other); -1: never."""
    n, m = len(doc), len(code)
    best = [[0] * (m + 1)] + [[-1] * (m + 1) for _ in range(n)]
    for i in range(n + 1):
        for j in range(m + 1):
            score = best[i][j]
            if score < 0 or i == n:
                continue
            if doc[i] == _WILD:
                best[i + 1][j] = max(best[i + 1][j], score)
                if j < m:
                    best[i][j + 1] = max(best[i][j + 1], score)
            if j < m and code[j] == _WILD:
                best[i + 1][j] = max(best[i + 1][j], score)
                best[i][j + 1] = max(best[i][j + 1], score)
            elif j < m and code[j] == doc[i]:
                best[i + 1][j + 1] = max(best[i + 1][j + 1], score + _is_word(doc[i]))
    return max(best[n])


def unquoted(quote: str, strings: list[tuple[str, ...]], holding: dict[str, set[int]]) -> str:
    """The first stretch of ``quote`` that no string of the code reads as; "" if none."""
    for doc in _stretches(quote):
        words = [t for t in doc if _is_word(t)]
        if len(words) < 3:
            continue
        need = max(3, len(words) / 2)
        candidates = set().union(*(holding.get(word, set()) for word in words))
        if not any(_matched(doc, strings[k]) >= need for k in candidates):
            return " ".join("…" if t == _WILD else t for t in doc)
    return ""


def quoted_messages() -> list[str]:
    """The backquoted messages of the first column of troubleshooting's tables."""
    out = []
    for line in read(TROUBLESHOOTING).splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if line.startswith("| ") and len(cells) > 2:
            out += re.findall(r"`([^`]+)`", cells[1])
    return out


def test_every_message_troubleshooting_quotes_is_in_the_code() -> None:
    strings, holding = _code_strings()
    quotes = quoted_messages()
    assert len(quotes) > 250
    stale = []
    for quote in quotes:
        if any(words in quote for words in UNCHECKED_QUOTES):
            continue
        stretch = unquoted(quote, strings, holding)
        if stretch:
            stale.append(f"{quote!r}: {stretch!r}")
    assert not stale, ("docs/troubleshooting.md quotes messages the code does not give "
                       "(any more?):\n" + "\n".join(stale))
    unused = [words for words in UNCHECKED_QUOTES if not any(words in q for q in quotes)]
    assert not unused, f"UNCHECKED_QUOTES names quotes troubleshooting lost: {unused}"


def test_the_quote_reader_tells_a_message_from_a_made_up_one() -> None:
    strings, holding = _code_strings()
    assert not unquoted("CMD: command not found in the app's PATH (check the command and the "
                        "PATH given to the app)", strings, holding)
    assert not unquoted("cannot write DEST: cannot create folder DIR: REASON", strings, holding)
    assert unquoted("command 'CMD' cannot be executed: REASON", strings, holding)
    assert unquoted("vault_sts_endpoint: expected an https:// URL, got 'X'", strings, holding)


def test_troubleshooting_names_every_reference_scheme() -> None:
    from entrypoint.plan.refs import SCHEMES

    expected = f"(expected one of {', '.join(SCHEMES)})"
    assert f"unknown reference scheme 'X' {expected}`" in read(TROUBLESHOOTING)


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
