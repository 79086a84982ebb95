from entrypoint.cli import console

raise SystemExit(console())
