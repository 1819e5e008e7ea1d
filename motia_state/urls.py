"""Store URLs: parsed once into a :class:`StoreURL`, then passed down to the backend that opens it.

Parsing knows nothing of the backends: which backend a scheme names is the registry's
(:mod:`motia_state.backends`), which query parameters a backend takes is the backend's. Everything here
keeps the password out of sight: :attr:`StoreURL.masked` is the only form ever shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode

from .errors import StateConfigError, StateKeyError, mask_secrets, mask_url, userinfo_end

__all__ = ["StoreURL", "parse_url"]

_MALFORMED_USERINFO: Final = "@/?#"


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A store URL taken apart: ``scheme://[user[:password]@]hosts[/path][?query]``.

    ``username``/``password`` are decoded; ``hosts`` is the raw host list (``h1:7000,h2:7001`` for a
    cluster); ``path`` keeps its leading ``/``; ``query`` keeps the order and repeats of the original.
    """

    raw: str = field(repr=False)
    scheme: str
    username: str | None
    password: str | None = field(repr=False)
    hosts: str
    path: str
    query: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return f"StoreURL({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    @property
    def masked(self) -> str:
        """The URL with the password replaced by ``***``: the only form to print."""
        return mask_url(self.raw)

    def host_list(self) -> list[tuple[str, int | None]]:
        """``hosts`` as (host, port) pairs; IPv6 brackets removed. StateConfigError for an unreadable port."""
        out: list[tuple[str, int | None]] = []
        for part in self.hosts.split(","):
            if not part:
                continue
            host, port_text = part, ""
            if part.startswith("["):
                end = part.find("]")
                host, port_text = part[1:end], part[end + 1 :].removeprefix(":")
            elif part.count(":") == 1:
                host, port_text = part.split(":")
            port: int | None = None
            if port_text:
                if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                    raise StateConfigError(f"{self.masked!r}: the port {port_text!r} is not a number from 1 to 65535")
                port = int(port_text)
            out.append((unquote(host), port))
        return out

    def without(self, names: Iterable[str]) -> StoreURL:
        """The same URL without the query parameters ``names``."""
        drop = set(names)
        return self.replace(query=tuple((k, v) for k, v in self.query if k not in drop))

    def replace(
        self,
        *,
        scheme: str | None = None,
        query: Iterable[tuple[str, str]] | None = None,
        path: str | None = None,
        hosts: str | None = None,
    ) -> StoreURL:
        """A copy with another scheme, query, path or hosts (the text is rebuilt, credentials re-encoded)."""
        new_scheme = self.scheme if scheme is None else scheme
        new_query = self.query if query is None else tuple(query)
        new_path = self.path if path is None else path
        new_hosts = self.hosts if hosts is None else hosts
        text = _render(new_scheme, self.username, self.password, new_hosts, new_path, new_query)
        return StoreURL(text, new_scheme, self.username, self.password, new_hosts, new_path, new_query)

    def text(self) -> str:
        """The URL as a string a driver can parse (credentials percent-encoded). Never print it."""
        return _render(self.scheme, self.username, self.password, self.hosts, self.path, self.query)

    def redact(self, text: str) -> str:
        """``text`` with this URL's password (in any spelling) and any URL password removed."""
        text = mask_secrets(text, self.raw)
        if self.password:
            for secret in sorted({self.password, quote(self.password, safe="")}, key=len, reverse=True):
                text = text.replace(secret, "***")
        return text


def _render(
    scheme: str,
    username: str | None,
    password: str | None,
    hosts: str,
    path: str,
    query: tuple[tuple[str, str], ...],
) -> str:
    auth = ""
    if username is not None or password is not None:
        auth = quote(username or "", safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        auth += "@"
    text = f"{scheme}://{auth}{hosts}{path}"
    if query:
        text += "?" + urlencode(query)
    return text


def parse_url(url: object, source: str = "url") -> StoreURL:
    """Take a store URL apart once; :class:`StateConfigError` naming ``source`` when it cannot be read."""
    if type(url) is not str or "://" not in url:
        shown = mask_url(url) if isinstance(url, str) else repr(url)
        raise StateConfigError(
            f"{source}: {shown!r} is not a store URL; use sqlite:///PATH, postgresql://…, redis://… or memory://"
        )
    if "\x00" in url:
        raise StateKeyError(f"{source}: a store URL cannot contain U+0000")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    username: str | None = None
    password: str | None = None
    at = userinfo_end(rest)
    if at != -1:
        userinfo, rest = rest[:at], rest[at + 1 :]
        if any(c in userinfo for c in _MALFORMED_USERINFO):
            raise StateConfigError(
                f"{source}: {mask_url(url)!r} cannot be read: the user or password holds a character that must be"
                " percent-encoded in a URL (@ : / ? # %); encode it with urllib.parse.quote(password, safe='')"
            )
        user_text, has_password, password_text = userinfo.partition(":")
        username = unquote(user_text)
        password = unquote(password_text) if has_password else None
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise StateConfigError(f"{source}: {mask_url(url)!r} has a '#' fragment, which a store URL cannot use")
    rest, _, query_text = rest.partition("?")
    slash = rest.find("/")
    hosts, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    try:
        query = tuple(parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text)))
    except ValueError:
        raise StateConfigError(f"{source}: the query string of {mask_url(url)!r} cannot be read") from None
    return StoreURL(url, scheme, username, password, hosts, path, query)
