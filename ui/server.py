"""The page as an ASGI app: ``app.py`` behind ``AccessGuard``, started by ``searchapp ui``.

``streamlit run ui/server.py --server.address A --server.port P`` finds ``app`` below and
serves it with uvicorn. The guard's policy comes from those same two options and the access
secret from ``SEARCHAPP_UI_SECRET``, which ``searchapp ui`` sets (or clears) for the child.
Run ``ui/app.py`` directly only for development: it then has no Host/Origin guard.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from streamlit import config

from searchapp.ui.guard import AccessGuard, choose_secret, policy_for
from searchapp.ui.media import media_routes
from searchapp.ui.peer import owner_checks_work

SECRET_ENV = "SEARCHAPP_UI_SECRET"
PAGE = Path(__file__).resolve().with_name("app.py")


def _policy():  # noqa: ANN202 - AccessPolicy
    bind = str(config.get_option("server.address") or "localhost")
    port = int(config.get_option("server.port"))
    secret, generated = choose_secret(bind, os.environ.get(SECRET_ENV, ""))
    if generated:
        # only reached when started without `searchapp ui`, which prints the secret it sets
        raise SystemExit(f"searchapp: {bind} is not loopback; set {SECRET_ENV} to serve it")
    # no secret: a loopback bind, which answers only this account where that can be told
    owner = os.getuid() if not secret and owner_checks_work() else None
    return policy_for(bind, port, secret, owner)


app = st.App(PAGE, routes=media_routes(), middleware=[Middleware(AccessGuard, policy=_policy())])
