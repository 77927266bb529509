"""The ``searchapp`` command: a front-end over the core read API and the writer."""

from searchapp.cli.main import main

__all__ = ["main"]
