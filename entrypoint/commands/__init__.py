"""One module per subcommand: ``run`` (resident supervisor), ``exec_app`` (``--exec``),
``check`` and ``check_templates``, ``status``, and what help shows (``help``).
``entrypoint.cli`` parses the command line and dispatches here."""
