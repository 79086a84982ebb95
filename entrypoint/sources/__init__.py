"""Secret sources: one module per kind behind one protocol (``sources.base.Source``)."""
