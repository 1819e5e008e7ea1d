"""The state browser (SPEC §13): ``motia-state ui`` serves a page for looking at and fixing a store.

Safe by default:

* it binds 127.0.0.1, and there answers only requests whose Host names the loopback (no DNS rebinding);
* every request that changes state carries the browser's token in the ``X-Motia-State-Token`` header (the
  page holds it; a page of another site can neither read it nor send that header without a CORS preflight,
  which is never granted), and a JSON body;
* on any other address every request needs the token: the printed URL carries it once (``?token=``), the
  page keeps it in an HttpOnly, SameSite=Strict cookie;
* ``--read-only`` refuses every change and opens a SQL store with ``migrate: check``: nothing is written;
* the page builds every value as text (never as HTML) under a Content-Security-Policy allowing no inline
  script; the store's URL is shown with its password masked.
"""

from __future__ import annotations

import ipaddress
import secrets

from .server import Browser, create_app

__all__ = ["Browser", "create_app", "is_loopback", "new_token"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token (URL-safe)."""
    return secrets.token_urlsafe(24)
