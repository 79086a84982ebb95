"""The Vault side: everything here is imported only when a ``vault:`` reference meets a
``VAULT_ADDR`` (the local-directory path loads none of it, nor http.client, ssl or botocore).

- ``connection``: address, namespace, TLS and User-Agent from the ``VAULT_*`` variables
- ``transport``, ``answers``: Vault's HTTP API on http.client, its errors as exceptions
- ``client``: the API with and without our token, the start-up retry loop
- ``auth``: one module per login method (token, aws-iam, approle, kubernetes)
- ``token_keeper``: renewal ahead of expiry, login again, revoke on exit
- ``kv``: mount detection (KV v1/v2) and the shape of each kind of read
- ``source``: ``VaultSource``, the Source and the lease operations the engine uses
"""
