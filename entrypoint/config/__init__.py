"""Configuration: the table of every setting (``settings``), the typed model and how it is
merged from flags, ``ENTRYPOINT_*`` variables, the TOML file and defaults (``model``), the
``[[template]]`` tables (``tables``) and the parsers of small value types (``values``).

A new setting is one row in ``settings.SETTINGS`` and one field in ``model.Config``."""
