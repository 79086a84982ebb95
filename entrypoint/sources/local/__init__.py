"""The local secrets directory: ``vault:`` paths as JSON/TOML files (``folder``) and
``consul:`` keys as text files (``consul``), for development without a server."""
