"""Policies: a dict of path glob -> capabilities, Vault's glob rules, and HCL parsing.

Globs follow Vault: a trailing `*` is a prefix match, `+` matches exactly one path
segment, anything else is exact. Capabilities of all matching rules are united and
`deny` wins; that is simpler than Vault's "most specific rule wins" and gives the same
answer for the policies tests write. The `root` policy allows everything.
"""

from __future__ import annotations

import json
import re

Policy = dict[str, list[str]]

# Vault's built-in default policy, the parts a client of ours touches.
DEFAULT_POLICY: Policy = {
    "auth/token/lookup-self": ["read"],
    "auth/token/renew-self": ["update"],
    "auth/token/revoke-self": ["update"],
    "sys/capabilities-self": ["update"],
    "sys/leases/renew": ["update"],
    "sys/renew": ["update"],
    "sys/leases/lookup": ["update"],
    "sys/internal/ui/mounts": ["read"],
    "sys/wrapping/wrap": ["update"],
    "sys/wrapping/lookup": ["update"],
    "sys/wrapping/unwrap": ["update"],
}

# Which capability an operation needs; POST to a path counts as create or update.
NEEDED = {"read": {"read"}, "list": {"list"}, "update": {"create", "update"},
          "delete": {"delete"}, "patch": {"patch"}}
# Paths that also need sudo, as in Vault (`revoke-prefix`, `revoke-force`).
SUDO_PREFIXES = ("sys/leases/revoke-prefix/", "sys/leases/revoke-force/", "sys/revoke-prefix/")

_HCL_RULE = re.compile(
    r'path\s+"(?P<path>[^"]+)"\s*\{[^}]*?capabilities\s*=\s*\[(?P<caps>[^\]]*)\][^}]*\}',
    re.S,
)


def glob_matches(glob: str, path: str) -> bool:
    """Vault's ACL glob: trailing `*` = prefix, `+` = one segment."""
    prefix = glob.endswith("*")
    body = glob[:-1] if prefix else glob
    if "+" not in body:
        return path.startswith(body) if prefix else path == body
    parts = re.split(r"(\+)", body)
    pattern = "".join("[^/]+" if part == "+" else re.escape(part) for part in parts)
    return re.match(pattern + (".*" if prefix else "") + r"\Z", path, re.S) is not None


def capabilities(policies: dict[str, Policy], names: list[str], path: str) -> set[str]:
    """The capabilities the named policies give on `path`."""
    if "root" in names:
        return {"create", "read", "update", "delete", "list", "sudo", "root"}
    found: set[str] = set()
    for name in names:
        for glob, caps in policies.get(name, {}).items():
            if glob_matches(glob, path):
                found.update(caps)
    if "deny" in found:
        return {"deny"}
    return found


def allowed(policies: dict[str, Policy], names: list[str], path: str, operation: str) -> bool:
    caps = capabilities(policies, names, path)
    if "root" in caps:
        return True
    if "deny" in caps or not caps & NEEDED[operation]:
        return False
    return not path.startswith(SUDO_PREFIXES) or "sudo" in caps


def may_see_mount(policies: dict[str, Policy], names: list[str], mount_path: str) -> bool:
    """The preflight check of sys/internal/ui/mounts: any capability under the mount."""
    if "root" in names:
        return True
    for name in names:
        for glob, caps in policies.get(name, {}).items():
            literal = re.split(r"[+*]", glob, maxsplit=1)[0]
            usable = set(caps) - {"deny"}
            if usable and (literal.startswith(mount_path) or mount_path.startswith(literal)):
                return True
    return False


def parse_policy(text: str) -> Policy:
    """An HCL (or JSON) policy document as `vault policy write` sends it."""
    stripped = text.strip()
    if stripped.startswith("{"):
        document = json.loads(stripped)
        return {path: list(rule.get("capabilities", [])) for path, rule in document["path"].items()}
    no_comments = re.sub(r"(?m)^\s*#.*$", "", text)
    policy: Policy = {}
    for match in _HCL_RULE.finditer(no_comments):
        caps = re.findall(r'"([^"]+)"', match.group("caps"))
        policy[match.group("path")] = caps
    return policy


def render_policy(policy: Policy) -> str:
    """HCL text for a policy given as a dict (what sys/policies/acl returns)."""
    blocks = []
    for path, caps in policy.items():
        quoted = ", ".join(f'"{cap}"' for cap in caps)
        blocks.append(f'path "{path}" {{\n  capabilities = [{quoted}]\n}}\n')
    return "\n".join(blocks)
