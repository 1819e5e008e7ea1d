"""``motia-state ui``: the state browser (SPEC §13) on the configured store."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import Any

import click

from ..errors import StateError
from .common import EXIT_USAGE, CLIFailure, failure, target

__all__ = ["ui_command"]

DEFAULT_PORT = 8710


def _url(host: str, port: int, token: str | None) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()  # every interface: the name others reach this machine by
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/" + (f"?token={token}" if token else "")


@click.command("ui", short_help="Serve the state browser: a local web page for looking at and fixing state.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port (0: any free one)."
)
@click.option("--read-only", is_flag=True, help="Show the store and never write to it (no edit, no migration).")
@click.option(
    "--token",
    envvar="MOTIA_STATE_UI_TOKEN",
    default=None,
    metavar="TOKEN",
    help="The token changes need (and, off 127.0.0.1, every request); default: a new random one.",
)
@click.pass_context
def ui_command(ctx: click.Context, host: str, port: int, read_only: bool, token: str | None) -> None:
    """Serve a web page browsing the store: scopes (searchable, paged), a scope's entries with their values
    and time left, filters, a key's history, edits, delete and clear, triggers with their lag and parked
    changes, all updating live. Prints the page's URL on stdout, then serves until Ctrl-C or SIGTERM.

    It listens on 127.0.0.1 unless --host says otherwise; on any other address every request needs the
    token, which the printed URL carries. Every change needs it wherever it listens.

    \b
    Examples:
      motia-state ui
      motia-state --url postgresql://app@db:5432/app ui --read-only
      motia-state ui --host 0.0.0.0 --port 8710
    """
    import uvicorn

    from ..manager import StateManager
    from ..ui import Browser, create_app, is_loopback, new_token
    from ..ui.server import LOOPBACK_NAMES

    where = target(ctx)
    settings = where.settings()
    if read_only and settings.backend.option("migrate") is not None:
        settings = where.settings(migrate="check")  # a read-only browser never migrates
        if settings.kind == "sqlite":
            from ..sql.connect import sqlite_path

            _require_file(sqlite_path(settings.store_url))
    local = is_loopback(host)
    if token is not None and len(token) < 16:
        raise CLIFailure("--token must be at least 16 characters", EXIT_USAGE)
    browser = Browser(
        settings,
        token or new_token(),
        read_only=read_only,
        token_for_reads=not local,
        allowed_hosts=LOOPBACK_NAMES if local else None,
    )

    class Server(uvicorn.Server):
        listening = asyncio.Event()

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                self.listening.set()

        async def shutdown(self, sockets: Any = None) -> None:
            # Open event streams would hold the graceful shutdown for its whole timeout: end them first.
            browser.end_streams()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        create_app(browser),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = Server(config)

    listener = _listen(host, port)  # bound here: a port in use is one clear error, and --port 0 is known at once

    async def serve() -> None:
        state = settings.build(StateManager)
        await state.connect()  # a store that cannot open fails here, before any request is served
        browser.state = state
        try:
            running = asyncio.ensure_future(server.serve(sockets=[listener]))
            listening = asyncio.ensure_future(server.listening.wait())
            await asyncio.wait((running, listening), return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if server.started:
                bound = listener.getsockname()[1]
                url = _url(host, bound, None if local else browser.token)
                click.echo(url)
                sys.stdout.flush()
                mode = ", read-only" if read_only else ""
                click.echo(
                    f"motia-state ui: browsing {settings.masked_url} ({settings.kind}{mode}) at {url};"
                    " stop with Ctrl-C",
                    err=True,
                )
            await running
        finally:
            with contextlib.suppress(Exception):
                await state.close()
        if not server.started:
            raise CLIFailure(f"the server on {host}:{port} did not start (messages above)")

    try:
        asyncio.run(serve())
    except StateError as exc:
        raise failure(exc, settings.url) from exc
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv6 when the host is an IPv6 address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        message = f"--host {host!r}: not an address this machine can listen on ({exc.strerror})"
        raise CLIFailure(message, EXIT_USAGE) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CLIFailure(
            f"cannot listen on {host}:{port}: {exc.strerror} (another server there? try --port 0)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _require_file(path: str | None) -> None:
    import os

    if path is not None and not os.path.exists(path):
        raise CLIFailure(f"no SQLite store at {path}: --read-only opens an existing store only", EXIT_USAGE)
