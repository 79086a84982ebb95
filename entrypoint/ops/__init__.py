"""Operating a running entrypoint: status, metrics, readiness, sidecar mode, drain."""
