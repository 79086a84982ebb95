"""A sample app: prints which variables it received, values masked, then exits.

Run it under the entrypoint (see the README quickstart):

    entrypoint --local-secrets examples/dev-secrets -- python examples/sample_app.py
"""

from __future__ import annotations

import os
import sys

WATCHED = ("DB_USER", "DB_PASSWORD", "DATABASE_URL", "API_TOKEN", "API_ENDPOINT", "GREETING")


def mask(value: str) -> str:
    return f"{len(value)} characters, starts {value[:2]!r}…" if len(value) > 4 else "***"


def main() -> int:
    print(f"sample app pid={os.getpid()} received:")
    for name in WATCHED:
        value = os.environ.get(name)
        print(f"  {name:<14} {'(not set)' if value is None else mask(value)}")
    leaked = sorted(n for n in os.environ if n.startswith("ENTRYPOINT_") or n == "VAULT_TOKEN")
    print(f"  bootstrap variables visible to the app: {leaked or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
