"""A Consul KV stand-in for tests: Consul's HTTP API for /v1/kv, with fault controls."""

from tests.consulserver.server import ConsulRequest, ConsulServer
from tests.consulserver.store import KVEntry, KVStore

__all__ = ["ConsulRequest", "ConsulServer", "KVEntry", "KVStore"]
