"""The page server's process: Streamlit's own ``streamlit run`` command line, started by
``searchapp ui`` (``launch.py``) after one change to how Streamlit listens.

Streamlit binds its listening socket with protocol 0, so asyncio does not set TCP_NODELAY
on the connections it accepts. On a kept-alive connection a response's body then waits for
the browser's delayed ACK of its headers: 40 ms for each thumbnail after a connection's
first, and between the page's messages. Set on the listening socket, TCP_NODELAY is
inherited by every accepted connection (Linux, macOS). It has to happen here, before the
bind: Streamlit imports the app (``server.py``) only after binding.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys


def turn_nagle_off() -> bool:
    """Streamlit's listening sockets get TCP_NODELAY; False where this Streamlit has no
    ``_bind_socket`` to wrap (it then keeps its own behaviour)."""
    from streamlit.web.server.starlette import starlette_server

    bind = getattr(starlette_server, "_bind_socket", None)
    if bind is None:
        return False
    if getattr(bind, "nagle_off", False):
        return True

    def bind_without_nagle(*args, **kwargs) -> socket.socket:  # noqa: ANN002, ANN003
        sock = bind(*args, **kwargs)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    bind_without_nagle.nagle_off = True
    starlette_server._bind_socket = bind_without_nagle
    return True


def main(argv: list[str]) -> None:
    """``streamlit ARGV...`` in this process, with Nagle's algorithm off."""
    from streamlit.web.cli import main as streamlit_main

    turn_nagle_off()
    # Ctrl+C reaches this process from the terminal as well as through searchapp ui. Left to
    # asyncio, the SIGINT that uvicorn re-raises after its graceful shutdown becomes a
    # KeyboardInterrupt: a traceback and click's "Aborted!" under the user's prompt. With the
    # default action, uvicorn still shuts down first (it holds the signal while it serves),
    # then the process ends quietly, as it does on SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.argv = ["streamlit", *argv]
    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
