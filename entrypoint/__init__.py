"""entrypoint: a container ENTRYPOINT that resolves config and secrets and supervises the app."""

__version__ = "0.1.0"
