"""``consul:KEY`` references: the Consul KV client (``source``) and its blocking-query
watch (``watch``)."""
