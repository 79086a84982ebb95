"""From the environment to a plan of reads: reference syntax (``refs``), source keys
(``keys``), reading every path once into a generation (``resolve``) and turning a
generation into the app's environment (``resolution``).

A new reference form (``scheme:...``) is parsed in ``refs``; the source that answers it
lives under ``entrypoint.sources``."""
