"""Turning values into outputs: Jinja2 templates in a sandbox (``templates``,
``sandbox``, ``limits``, ``errors``), safe and atomic file writes (``safepath``,
``atomic``) and the dotenv formats ``entrypoint render`` prints (``dotenv``).

A new template function goes in ``sandbox``; a new output format beside ``dotenv``."""
