"""Who may reach the page: the address it was started on, its own origin, and the access secret.

``AccessGuard`` is ASGI middleware in front of every Streamlit route (the page, static files,
health, media, uploads and the websocket). It refuses:

- a ``Host`` that is not the address the page was started on (DNS rebinding: a page on
  ``evil.example`` that resolves to 127.0.0.1 sends ``Host: evil.example``);
- an ``Origin`` other than the page's own (another local port, another site, ``null``);
- cross-site subresource requests (fetch metadata), so other pages cannot embed the photos;
- with a secret set, anything without the access cookie; the page then asks for the secret;
- without one (a loopback bind), on Linux, connections held by another account on this
  computer (``peer.py``): loopback keeps other machines out, not the other local users.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from searchapp.errors import ConfigError
from searchapp.ui.peer import peer_uid

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not a bind
LOGIN_PATH = "/_searchapp/login"
OTHER_ACCOUNT = "this page belongs to another account on this computer"
UNKNOWN_PEER = (
    "cannot tell which account this connection comes from; start searchapp ui with "
    "SEARCHAPP_UI_SECRET set to open the page with a secret instead"
)
MIN_SECRET_CHARS = 12
MAX_FORM_BYTES = 4096
_TOKEN_LABEL = b"searchapp-ui-access"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def is_loopback(bind: str) -> bool:
    """Whether an address to bind reaches only this machine."""
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_secret(bind: str, configured: str) -> tuple[str, bool]:
    """The access secret for a start and whether it was generated here.

    A secret the user set applies on any bind; a bind beyond loopback gets a fresh one when
    none is set; a loopback bind with none set needs none (returns ``""``).
    """
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"SEARCHAPP_UI_SECRET is shorter than {MIN_SECRET_CHARS} characters; "
                "choose a longer one, or unset it to have one generated."
            )
        return configured, False
    if is_loopback(bind):
        return "", False
    return secrets.token_urlsafe(18), True


@dataclass(frozen=True)
class AccessPolicy:
    """The hosts, port and secret one page start accepts."""

    port: int
    hosts: frozenset[str]
    any_ip: bool = False  # a wildcard bind: an IP-literal Host names this machine directly
    secret: str = field(default="", repr=False)
    owner_uid: int | None = None  # when set, only this account's connections (peer.py)

    @property
    def cookie_name(self) -> str:
        # cookies ignore ports: one name per port keeps two pages on one host apart
        return f"searchapp_access_{self.port}"

    def token(self) -> str:
        """The cookie value: derived from the secret, so the cookie never holds the secret."""
        return hmac.new(self.secret.encode(), _TOKEN_LABEL, hashlib.sha256).hexdigest()

    def host_allowed(self, host: str | None) -> bool:
        """Whether a ``Host`` header (or an origin's host:port) names this page."""
        parsed = _split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if port != self.port:
            return False
        return name in self.hosts or (self.any_ip and _is_ip(name))

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether an ``Origin`` header is the page's own; absent means not a web page."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme != "http" or parts.path or parts.query or parts.fragment:
            return False
        return self.host_allowed(parts.netloc)

    def secret_matches(self, given: str) -> bool:
        return bool(self.secret) and hmac.compare_digest(given.encode(), self.secret.encode())

    def cookie_valid(self, cookie_header: str | None) -> bool:
        if not self.secret:
            return True
        value = cookie_parser(cookie_header or "").get(self.cookie_name, "")
        return hmac.compare_digest(value.encode(), self.token().encode())


def policy_for(
    bind: str, port: int, secret: str = "", owner_uid: int | None = None
) -> AccessPolicy:
    """The policy for a page bound to ``bind:port``: loopback names, or the bind as given;
    with ``owner_uid``, only connections that account holds."""
    name = bind.strip("[]").lower().rstrip(".")
    if name in WILDCARD_BINDS:
        hosts = LOOPBACK_NAMES | _own_names()
        return AccessPolicy(port, hosts, any_ip=True, secret=secret, owner_uid=owner_uid)
    hosts = LOOPBACK_NAMES | {name} if is_loopback(name) else frozenset({name})
    return AccessPolicy(port, frozenset(hosts), secret=secret, owner_uid=owner_uid)


class AccessGuard:
    """ASGI middleware applying an ``AccessPolicy`` to every HTTP request and websocket."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(headers) or self._peer_refusal(scope)
        if refusal is None and not self.policy.cookie_valid(headers.get("cookie")):
            if scope["type"] == "http" and scope["path"] == LOGIN_PATH:
                await self._login(scope, receive, send)
                return
            if scope["type"] == "http" and _wants_page(scope, headers):
                await _login_page(401, "")(scope, receive, send)
                return
            refusal = "the access secret is missing; open the page and enter it"
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal})
        else:
            await PlainTextResponse(refusal + "\n", 403, headers=_HEADERS)(scope, receive, send)

    def _refusal(self, headers: dict[str, str]) -> str | None:
        if not self.policy.host_allowed(headers.get("host")):
            return "this address is not the one the page was started on; use that one"
        if not self.policy.origin_allowed(headers.get("origin")):
            return "requests from other web pages are refused"
        if not _same_site_or_navigation(headers):
            return "other web pages may not embed this page's content"
        return None

    def _peer_refusal(self, scope: Scope) -> str | None:
        owner = self.policy.owner_uid
        if owner is None:
            return None
        client, server = scope.get("client"), scope.get("server")
        try:
            uid = peer_uid(tuple(client), tuple(server)) if client and server else None
        except (OSError, ValueError):
            uid = None
        if uid is None:  # not a socket of this machine's loopback (WSL's mirrored network)
            return UNKNOWN_PEER
        # root reads every file anyway (and runs relays such as WSL's localhost forwarding)
        return None if uid in (owner, 0) else OTHER_ACCOUNT

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await RedirectResponse("/", 303)(scope, receive, send)
            return
        form = parse_qs((await _read_body(receive)).decode("utf-8", "replace"))
        if not self.policy.secret_matches(form.get("secret", [""])[0]):
            await _login_page(401, "That is not the secret.")(scope, receive, send)
            return
        response = RedirectResponse("/", 303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            self.policy.cookie_name, self.policy.token(), httponly=True, samesite="strict"
        )
        await response(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    # a repeated Host or Origin header is refused as a whole: keep the join, never match it
    out: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _split_host(host: str | None) -> tuple[str, int] | None:
    if not host:
        return None
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port or 80
    except ValueError:
        return None
    if parts.hostname is None or parts.username is not None or parts.password is not None:
        return None
    if parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname.lower().rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _own_names() -> frozenset[str]:
    import socket

    name = socket.gethostname().lower()
    return frozenset({name, f"{name}.local"}) if name else frozenset()


def _same_site_or_navigation(headers: dict[str, str]) -> bool:
    """Fetch metadata: only this page itself, or a top-level visit, may load its content."""
    site = headers.get("sec-fetch-site")
    if site in (None, "same-origin", "none"):
        return True
    return headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") in (
        "document",
        None,
    )


def _wants_page(scope: Scope, headers: dict[str, str]) -> bool:
    return scope["method"] in ("GET", "HEAD") and (
        scope["path"] == "/" or headers.get("sec-fetch-dest") == "document"
    )


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while len(body) <= MAX_FORM_BYTES:
        message: Message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return body[:MAX_FORM_BYTES]


def _login_page(status: int, note: str) -> HTMLResponse:
    warning = f'<p class="note">{note}</p>' if note else ""
    return HTMLResponse(LOGIN_HTML.replace("{note}", warning), status, headers=_HEADERS)


LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Photo search: access secret</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: sans-serif; max-width: 28rem; margin: 4rem auto; padding: 0 1rem; }
input { font-size: 1rem; padding: .4rem; width: 100%; box-sizing: border-box; }
button { font-size: 1rem; margin-top: .8rem; padding: .4rem 1rem; }
.note { color: #b00020; }
</style></head>
<body><h1>Photo search</h1>
<p>This page is shared beyond this computer. Enter the access secret that
<code>searchapp ui</code> printed when it started (or the one set in
<code>SEARCHAPP_UI_SECRET</code>).</p>
{note}
<form method="post" action="/_searchapp/login">
<label for="secret">Access secret</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" autofocus>
<button type="submit">Open</button>
</form></body></html>
"""
