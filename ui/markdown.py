"""Plain text inside Streamlit's Markdown (captions, messages, pill labels).

File names, folder paths and typed queries are shown as they are: a ``*``, ``_`` or
``[x](url)`` in a name must not turn into emphasis or a link, nor ``$...$`` into a formula.
"""

from __future__ import annotations

MD_SPECIAL = "\\`*_[]<>~$#|"


def md_escape(text: str) -> str:
    """``text`` with every Markdown-special character escaped."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in text)
