"""Which account on this computer is at the other end of a loopback TCP connection (Linux).

A page bound to loopback is out of reach of other machines, not of the other accounts on
this one. Linux tells who holds the client's end: ``sock_diag`` netlink looks one socket up
by its addresses and ports and answers with its owner's uid (what ``ss -e`` shows), in tens
of microseconds; ``/proc/net/tcp`` holds the same but walks every hash bucket (~5 ms).

Elsewhere (macOS, Windows), or where netlink is blocked, :func:`owner_checks_work` is False;
there only an access secret (``SEARCHAPP_UI_SECRET``) keeps other local accounts out.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import struct

log = logging.getLogger(__name__)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
ALL_STATES = 0xFFFFFFFF
NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
# struct inet_diag_msg after the header: family, state, timer, retrans, the 48-byte
# inet_diag_sockid, then expires, rqueue, wqueue, uid, inode
_UID_AT = _HEADER.size + 4 + 48 + 12


def peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid that owns the client's end of the TCP connection ``client`` -> ``server``
    (addresses as the server sees them), or None when there is no such socket."""
    request = _request(client, server)
    message = _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.sendto(message + request, (0, 0))
        answer = diag.recv(8192)
    _, kind, _, _, _ = _HEADER.unpack_from(answer)
    if kind == NLMSG_ERROR or len(answer) < _UID_AT + 4:
        return None  # ENOENT: the client is gone (or never was)
    return struct.unpack_from("=I", answer, _UID_AT)[0]


def _request(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    """struct inet_diag_req_v2 for the client's socket: its own address is "src"."""
    src, dst = _ip(client[0]), _ip(server[0])
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    sockid = (
        struct.pack("!HH", client[1], server[1])
        + src.packed.ljust(16, b"\0")
        + dst.packed.ljust(16, b"\0")
        + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)  # any interface, any cookie
    )
    head = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, ALL_STATES)
    return head + sockid


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped  # a dual-stack server sees ::ffff:127.0.0.1; an IPv4 socket
    return ip


@functools.cache
def owner_checks_work() -> bool:
    """Whether :func:`peer_uid` answers here: tried once on a connection of our own."""
    if not hasattr(socket, "AF_NETLINK"):
        return False
    try:
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname()) as client,
        ):
            server.accept()[0].close()
            return peer_uid(client.getsockname(), server.getsockname()) is not None
    except OSError as err:  # netlink refused (a sandbox), or no loopback at all
        log.warning("cannot tell which account connects to the page (%s)", err)
        return False
