"""Run the stand-in by hand: python -m tests.vaultserver --port 8200 --root-token root."""

from __future__ import annotations

import argparse
import threading

from tests.vaultserver.server import VaultTestServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vaultserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--root-token", default="root")
    args = parser.parse_args(argv)
    server = VaultTestServer(root_token=args.root_token, port=args.port, host=args.host)
    server.start()
    print(f"Vault test server on {server.addr} (root token {args.root_token!r})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
