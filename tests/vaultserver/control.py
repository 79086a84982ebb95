"""The unauthenticated control paths under /_test/, for a server in another process.

All take and return JSON. POST bodies (every field optional unless said):
  POST /_test/seal, /_test/unseal                       -> {}
  POST /_test/fail        {"count", "status"=500, "message", "path_prefix"}
  POST /_test/rate-limit  {"count", "retry_after"=1, "http_date"=true, "path_prefix"}
  POST /_test/delay       {"seconds", "count", "path_prefix"}   (seconds 0 clears it)
  POST /_test/health      {"standby": true, ...}: what sys/health reports (set_health)
  POST /_test/clear-faults                              (also unseals, resets health)
  POST /_test/revoke-lease {"lease_id"}                 -> {"revoked": bool}
  POST /_test/revoke-token {"token"} or {"accessor"}
  POST /_test/restart     {"down_seconds"=0}: answers, then stops and starts on the port
  POST /_test/token       {"policies", "ttl", "max_ttl", "renewable", "period"} -> {"token"}
  POST /_test/policy      {"name", "rules": {glob: [caps]}}
  GET  /_test/requests                                  -> {"requests": [LoggedRequest...]}
  POST /_test/requests/clear
  GET  /_test/leases                                    -> {"leases": [ids]}
Unknown paths answer 404 {"errors": ["unknown control path"]}.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.vaultserver.server import VaultTestServer


def handle_control(
    vault: VaultTestServer, method: str, path: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    try:
        data: dict[str, Any] = json.loads(body) if body.strip() else {}
    except ValueError:
        return 400, {"errors": ["error parsing JSON"]}
    name = path[len("/_test/") :].strip("/")
    if method == "GET" and name == "requests":
        return 200, {"requests": [r.as_dict() for r in vault.requests]}
    if method == "GET" and name == "leases":
        return 200, {"leases": vault.leases()}
    if method != "POST":
        return 404, {"errors": ["unknown control path"]}
    if name == "seal":
        vault.seal()
    elif name == "unseal":
        vault.unseal()
    elif name == "fail":
        vault.fail_next(int(data.get("count", 1)), int(data.get("status", 500)),
                        data.get("message"), data.get("path_prefix"))
    elif name == "rate-limit":
        vault.rate_limit_next(int(data.get("count", 1)), float(data.get("retry_after", 1)),
                              bool(data.get("http_date", True)), data.get("path_prefix"))
    elif name == "delay":
        count = data.get("count")
        vault.set_delay(float(data.get("seconds", 0)), None if count is None else int(count),
                        data.get("path_prefix"))
    elif name == "health":
        vault.set_health(**{key: bool(value) for key, value in data.items()})
    elif name == "clear-faults":
        vault.clear_faults()
    elif name == "revoke-lease":
        return 200, {"revoked": vault.revoke_lease(str(data.get("lease_id", "")))}
    elif name == "revoke-token":
        vault.revoke_token(data.get("token"), data.get("accessor"))
    elif name == "restart":
        down = float(data.get("down_seconds", 0))

        def bounce() -> None:
            vault.stop()
            time.sleep(down)  # the outage the test asked for, not a wait on a condition
            vault.start()

        # After this answer is written: stop() would otherwise cut our own connection.
        threading.Timer(0.05, bounce).start()
    elif name == "token":
        token = vault.create_token(list(data.get("policies", ["default"])),
                                   int(data.get("ttl", 0)), data.get("max_ttl"),
                                   bool(data.get("renewable", True)), data.get("period"))
        return 200, {"token": token, "accessor": vault.token_accessor(token)}
    elif name == "policy":
        vault.set_policy(str(data["name"]), dict(data["rules"]))
    elif name == "requests/clear":
        vault.clear_requests()
    else:
        return 404, {"errors": ["unknown control path"]}
    return 200, {}
