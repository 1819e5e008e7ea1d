"""The error tree: every error the public API raises derives from :class:`StateError`."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "ChangesCompactedError",
    "SchemaOutOfDateError",
    "StateBackendError",
    "StateConfigError",
    "StateError",
    "StateKeyError",
    "StateValueError",
    "UpdateOpError",
    "mask_secrets",
    "mask_url",
    "url_password",
    "userinfo_end",
]


class StateError(Exception):
    """Base class of every error raised by motia-state."""


class StateKeyError(StateError, ValueError):
    """A scope or key is not a non-empty ``str`` without U+0000."""


class StateValueError(StateError, ValueError):
    """A value (or TTL) breaks the value rules; nothing was written."""

    def __init__(self, message: str, *, scope: str | None = None, key: str | None = None, path: str = "") -> None:
        super().__init__(message)
        self.scope = scope
        self.key = key
        self.path = path


class UpdateOpError(StateError, ValueError):
    """An ``update`` operation cannot be applied; nothing was written."""

    def __init__(self, message: str, *, op_index: int) -> None:
        super().__init__(message)
        self.op_index = op_index


class StateConfigError(StateError, ValueError):
    """The configuration (config.yml, URL or options) is invalid."""


class SchemaOutOfDateError(StateError):
    """The SQL schema is behind the installed migrations (``migrate: check``)."""

    def __init__(self, message: str, *, command: str = "motia-state migrate") -> None:
        super().__init__(message)
        self.command = command


class StateBackendError(StateError):
    """The backend failed: connection refused, timeout, server gone. Wraps the driver error."""

    def __init__(self, message: str, *, backend: str, url: str) -> None:
        masked = mask_url(url)
        super().__init__(f"{backend} backend at {masked}: {mask_secrets(message, url)}")
        self.backend = backend
        self.url = masked


class ChangesCompactedError(StateError):
    """``watch(since=...)`` asked for changes older than the store still keeps (``changes_retention``).

    ``oldest`` is the oldest revision still kept: read the state again, then watch from ``state.revision()``.
    """

    def __init__(self, since: int, oldest: int) -> None:
        super().__init__(
            f"the changes after revision {since} are no longer kept (the oldest kept is {oldest};"
            " changes_retention sets how long they are kept): read the state again and watch from"
            " state.revision()"
        )
        self.since = since
        self.oldest = oldest


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")
# A URL percent-encoded as a query value (``?listen_url=postgresql%3A%2F%2Fu%3Apw%40host``): its password.
_ENCODED_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*%3A%2F%2F)(?P<user>(?:(?!%3A|%40)[^@/\s&])*)%3A(?P<pw>[^\s&]*?)%40", re.I
)
# What may follow the userinfo's '@': a host list (names, IPv6 brackets, ports, commas), then the path or end.
_AFTER_AT = re.compile(r"[\w.\-\[\]:,%~]*(?:[/?#]|$)")


def userinfo_end(rest: str) -> int:
    """Index of the '@' ending the userinfo in ``rest`` (the URL after ``://``), or -1 when there is none.

    The last '@' before the query string that a host part follows, so that a password holding an unencoded
    '@' or '/' is still found whole and an '@' inside a query value is not taken for it.
    """
    query = rest.find("?")
    for limit in ((query,) if query != -1 else ()) + (len(rest),):
        at = limit
        while (at := rest.rfind("@", 0, at)) != -1:
            if _AFTER_AT.match(rest, at + 1):
                return at
    return -1


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (even one pasted without percent-encoding)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    at = userinfo_end(rest)
    if at == -1 or ":" not in rest[:at]:
        return f"{scheme}://{_mask_query(rest)}"
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}://{user}:***@{_mask_query(rest[at + 1 :])}"


def _mask_query(text: str) -> str:
    """The passwords of URLs given as query values (``?listen_url=...``, plain or percent-encoded) masked."""
    head, sep, query = text.partition("?")
    if not sep:
        return text
    query = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", query)
    return head + sep + _ENCODED_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}%3A***%40", query)


def url_password(url: str) -> str | None:
    """The password of ``url`` as written (percent-encoded or not), or None."""
    _, sep, rest = url.partition("://")
    at = userinfo_end(rest) if sep else -1
    if at == -1 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1] or None


def mask_secrets(text: str, url: str | None = None) -> str:
    """Remove the password of ``url`` (and of any URL in ``text``) from ``text``."""
    password = url_password(url) if url else None
    if password:
        for secret in sorted({password, unquote(password)}, key=len, reverse=True):
            text = text.replace(secret, "***")
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
