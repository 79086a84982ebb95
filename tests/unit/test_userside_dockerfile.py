"""Dockerfile.example, checked without a Docker engine: a small parser of the Dockerfile
syntax (instructions, line continuations, comments, JSON-array forms), then the rules
the users' side promises: entrypoint as ENTRYPOINT in exec form, the app as CMD, a
non-root app user, and nothing secret baked in.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.example"

INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
    "WORKDIR",
})
SECRET_NAME = re.compile(
    r"TOKEN|PASSWORD|PASSWD|SECRET|PRIVATE|CREDENTIAL|ACCESS_KEY|API_KEY|ROLE_ID", re.I)
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}"                      # an AWS access key id
    r"|\bhv[sbr]\.[A-Za-z0-9_-]{20,}"        # a Vault token (current format)
    r"|\bs\.[A-Za-z0-9]{24}\b"               # a Vault token (old format)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|[a-z]+://[^/\s:@]+:[^@\s]+@")         # a URL with a password in it


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON-array form (``["a", "b"]``), or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None  # Docker treats an invalid array as the shell form
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = joined.partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    if pending:
        raise ValueError("the file ends inside a continued instruction")
    return out


def variables(instruction: Instruction) -> dict[str, str]:
    """Names and values of an ENV or ARG (``K=V K2=V2``, legacy ``K V``, bare ``ARG K``)."""
    if instruction.keyword == "ENV" and "=" not in instruction.args.split(" ", 1)[0]:
        name, _, value = instruction.args.partition(" ")
        return {name: value.strip()}
    pairs: dict[str, str] = {}
    for word in shlex.split(instruction.args):
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


# -- the parser itself --------------------------------------------------------------------

def test_parser_joins_continuations_and_reads_both_forms() -> None:
    parsed = parse('FROM x\n# c\nRUN a \\\n  # inside\n  && b\nCMD ["p", "q"]\nCMD p q\n')
    assert [i.keyword for i in parsed] == ["FROM", "RUN", "CMD", "CMD"]
    assert parsed[1].args == "a && b"
    assert parsed[2].exec_form() == ["p", "q"]
    assert parsed[3].exec_form() is None
    with pytest.raises(ValueError, match="unknown instruction"):
        parse("FORM python\n")


def test_parser_reads_env_and_arg_forms() -> None:
    env, legacy, arg = parse("ENV A=1 B='two words'\nENV C some value\nARG D\n")
    assert variables(env) == {"A": "1", "B": "two words"}
    assert variables(legacy) == {"C": "some value"}
    assert variables(arg) == {"D": ""}


def test_secret_rules_catch_what_they_should() -> None:
    assert SECRET_NAME.search("VAULT_TOKEN") and SECRET_NAME.search("DB_PASSWORD")
    assert not SECRET_NAME.search("ENTRYPOINT_USER")
    assert SECRET_VALUE.search("AKIAABCDEFGHIJKLMNOP")
    assert SECRET_VALUE.search("postgresql://app:hunter2@db/app")
    assert not SECRET_VALUE.search("postgresql://db.internal:5432/app")


# -- Dockerfile.example -------------------------------------------------------------------

def test_base_is_a_slim_python(instructions: list[Instruction]) -> None:
    froms = only(instructions, "FROM")
    assert froms and instructions[0].keyword in ("FROM", "ARG")
    image = froms[-1].args.split()[0]
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", image), image


def test_the_entrypoint_is_installed_and_is_the_entrypoint(
        instructions: list[Instruction]) -> None:
    runs = " ".join(i.args for i in only(instructions, "RUN"))
    assert re.search(r"pip install\b[^&]*(vault-entrypoint|/src/vault-entrypoint)", runs)
    entrypoints = only(instructions, "ENTRYPOINT")
    assert len(entrypoints) == 1
    assert entrypoints[0].exec_form() == ["entrypoint", "--"], (
        "ENTRYPOINT must be the JSON array [\"entrypoint\", \"--\"] so that it is PID 1")


def test_the_app_is_cmd_in_exec_form(instructions: list[Instruction]) -> None:
    cmds = only(instructions, "CMD")
    assert len(cmds) == 1
    argv = cmds[0].exec_form()
    assert argv, "CMD must be a JSON array: the app runs without a shell"
    copied = " ".join(i.args for i in only(instructions, "COPY"))
    assert any(part in copied for part in argv[1:]) or argv[0] in copied, (
        "CMD should run something the Dockerfile copies in")


def test_the_app_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    users = [i.args.split(":")[0] for i in only(instructions, "USER")]
    env: dict[str, str] = {}
    for i in only(instructions, "ENV"):
        env.update(variables(i))
    chosen = users[-1] if users else env.get("ENTRYPOINT_USER", "")
    assert chosen, "set USER or ENTRYPOINT_USER"
    assert chosen.split(":")[0] not in ("root", "0")
    runs = " ".join(i.args for i in only(instructions, "RUN"))
    assert re.search(rf"useradd\b[^&]*\b{re.escape(chosen.split(':')[0])}\b", runs) or (
        chosen.split(":")[0].isdigit()), "the app user must exist in the image"


def test_nothing_secret_is_baked_in(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            for name, value in variables(instruction).items():
                assert not SECRET_NAME.search(name), (
                    f"line {instruction.line}: {instruction.keyword} {name} looks like a "
                    "secret; set it per environment, not in the image")
                assert not SECRET_VALUE.search(value), f"line {instruction.line}: {name}"
        assert not SECRET_VALUE.search(instruction.args), f"line {instruction.line}"
    copied = " ".join(i.args for i in only(instructions, "COPY") + only(instructions, "ADD"))
    assert ".vault-token" not in copied and ".aws" not in copied
    # A local secrets directory in the image would answer vault: references in production
    # too (it wins over Vault when ENTRYPOINT_LOCAL_SECRETS is set): mount it instead.
    assert "dev-secrets" not in copied


def test_healthcheck_if_present_is_in_exec_form(instructions: list[Instruction]) -> None:
    for check in only(instructions, "HEALTHCHECK"):
        if check.args.upper() == "NONE":
            continue
        cmd = check.args.split("CMD", 1)
        assert len(cmd) == 2
    assert len(only(instructions, "HEALTHCHECK")) <= 1


def test_production_references_are_shown_in_comments() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for needed in ("VAULT_ADDR=", "ENTRYPOINT_VAULT_ROLE=", "vault:secret/app/api#token",
                   "${vault:database/creds/app#username}"):
        assert needed in comments, needed


def test_every_copied_path_exists_in_the_build_context(instructions: list[Instruction]) -> None:
    """The build context is the repository root (docker build -f Dockerfile.example .)."""
    copies = only(instructions, "COPY")
    assert copies
    for copy in copies:
        words = [w for w in shlex.split(copy.args) if not w.startswith("--")]
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"line {copy.line}: COPY {source}: no such path"
