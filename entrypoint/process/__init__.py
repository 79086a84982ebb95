"""PID 1 for the app: the supervisor and its events, starting the child (``child``,
``identity``, ``hardening``), signals in and out (``signals``, ``forward``,
``terminal``), reaping (``reaper``) and side commands run on a change (``side_commands``).

Nothing here knows about secrets: the rotation engine asks for actions by posting
``events``."""
