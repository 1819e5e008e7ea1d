"""The error tree: every error the public API raises derives from :class:`StateError`."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = [
    "SchemaOutOfDateError",
    "StateBackendError",
    "StateConfigError",
    "StateError",
    "StateKeyError",
    "StateValueError",
    "UpdateOpError",
    "mask_url",
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


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if sep and at != -1 and ":" in rest[:at] and any(c in rest[:at] for c in "@/?#"):
        # A password with an unencoded '@', '/', '?' or '#' defeats URL parsing: hide everything up to the last '@'.
        return f"{scheme}://{rest[:at].split(':', 1)[0]}:***@{rest[at + 1 :]}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_secrets(text: str, url: str | None = None) -> str:
    """Remove the password of ``url`` (and of any URL in ``text``) from ``text``."""
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            for secret in {password, unquote(password)}:
                text = text.replace(secret, "***")
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
