"""Plain text inside Streamlit's Markdown (captions, messages, pill labels).

File names, folder paths and typed queries are shown as they are: a ``*``, ``_`` or
``[x](url)`` in a name must not turn into emphasis or a link, nor ``$...$`` into a formula.
A name's bytes that are not UTF-8 (lone surrogates in Python) show as U+FFFD: the page's
messages are UTF-8, and one such name stopped the page with UnicodeEncodeError.
A view's library errors show the same way, as their one line (:func:`say_errors`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ParamSpec

import streamlit as st

from searchapp.errors import SearchAppError

P = ParamSpec("P")

MD_SPECIAL = "\\`*_[]<>~$#|"
_SURROGATE = re.compile("[\ud800-\udfff]")


def web_text(text: str) -> str:
    """``text`` as a web page can carry it: undecodable bytes of a name become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def md_escape(text: str) -> str:
    """``text`` with every Markdown-special character escaped (and :func:`web_text`)."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in web_text(text))


def say_errors(view: Callable[P, None]) -> Callable[P, None]:
    """``view`` with its library errors (a damaged or vanished library, a folder gone)
    shown as their one-line message instead of a traceback; the rest of the page stays."""

    @functools.wraps(view)
    def said(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            view(*args, **kwargs)
        except SearchAppError as err:
            st.error(md_escape(str(err)), icon=":material/error:")

    return said
