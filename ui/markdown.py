"""Plain text inside Streamlit's Markdown (captions, messages, pill labels).

File names, folder paths and typed queries are shown as they are: a ``*``, ``_`` or
``[x](url)`` in a name must not turn into emphasis or a link, nor ``$...$`` into a formula.
A name's bytes that are not UTF-8 (lone surrogates in Python) show as U+FFFD: the page's
messages are UTF-8, and one such name stopped the page with UnicodeEncodeError.
"""

from __future__ import annotations

import re

MD_SPECIAL = "\\`*_[]<>~$#|"
_SURROGATE = re.compile("[\ud800-\udfff]")


def web_text(text: str) -> str:
    """``text`` as a web page can carry it: undecodable bytes of a name become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def md_escape(text: str) -> str:
    """``text`` with every Markdown-special character escaped (and :func:`web_text`)."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in web_text(text))
