"""Secret sources: one module per kind behind the :class:`~entrypoint.sources.base.Source` protocol."""
