"""The stand-in answers as the real Vault does, on what it still serves (issue 13, point 5).

The same requests go to a real `vault server -dev` and to the stand-in; status and error
text must match. Where the stand-in differed, the real server's answer is the reference.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

GO_BOOLS = ["true", "1", "t", "T", "TRUE", "True", "false", "0", "f", "F", "FALSE", "False",
            "yes", "on", "no"]


def _answer(server: Any, method: str, path: str, **kw: Any) -> tuple[int, list[str]]:
    reply = requests.request(method, f"{server.addr}/v1/{path}", timeout=10,
                             headers={"X-Vault-Token": server.root_token}, **kw)
    body = reply.json() if reply.content else {}
    return reply.status_code, list(body.get("errors", [])) if reply.status_code >= 400 else []


@pytest.fixture
def both(vault_server: Any, vault_standin: Any) -> list[Any]:
    for server in (vault_server, vault_standin):
        server.write_kv("kv", "folder/item", {"x": "1"})
    return [vault_server, vault_standin]


@pytest.mark.parametrize("flag", GO_BOOLS)
def test_list_flag_is_parsed_like_go_parsebool(both: list[Any], flag: str) -> None:
    real, standin = (_answer(s, "GET", "kv/folder", params={"list": flag}) for s in both)
    assert standin == real, f"?list={flag}: stand-in {standin}, Vault {real}"


def test_lookup_of_a_revoked_token_is_403_bad_token(both: list[Any]) -> None:
    answers = []
    for server in both:
        token = server.create_token(["default"], ttl=60)
        server.revoke_token(token)
        answers.append(_answer(server, "POST", "auth/token/lookup", json={"token": token}))
    assert answers[1] == answers[0] == (403, ["bad token"])


def test_revoke_of_a_lease_is_synchronous_by_default(both: list[Any]) -> None:
    """No `sync` given: Vault revokes before answering, 204 (unknown lease too)."""
    answers = [_answer(s, "PUT", "sys/leases/revoke", json={"lease_id": "kv/none/x"})
               for s in both]
    assert answers[1] == answers[0] == (204, [])
