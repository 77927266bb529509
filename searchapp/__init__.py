"""Local-first semantic photo search: the core.

The public surface: :class:`searchapp.library.Library` (the read API: search, facets,
status, photos), :class:`searchapp.config.Settings` / :func:`searchapp.config.load_settings`,
and the error hierarchy in :mod:`searchapp.errors`. The writer layer is
:mod:`searchapp.indexer`, the front-ends :mod:`searchapp.cli` and :mod:`searchapp.ui`.
"""

__version__ = "0.1.0"
