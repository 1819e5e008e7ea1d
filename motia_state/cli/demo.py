"""The ``demo`` command: the booking flow on the configured store."""

from __future__ import annotations

import click

from .common import run_on_store, target

__all__ = ["demo_command"]


@click.command("demo", short_help="Run the booking example on the configured store.")
@click.option("--scope", default=None, help="Scope (trace id) to use; default: a new trace-<uuid>.")
@click.pass_context
def demo_command(ctx: click.Context, scope: str | None) -> None:
    """Run the reference's booking flow on the configured store and print the resulting state.

    It stores a booking, the dot-named keys booking.customer, booking.venue and payment.status, confirms
    the booking with update operations, reads it back typed as dataclasses, and adds a seat hold that
    expires after 15 minutes. SQLite at .motia/motia.state.db unless configured otherwise.

    \b
    Examples:
      motia-state demo
      motia-state --url memory:// demo
    """
    from ..demo import run_demo

    settings = target(ctx).settings()
    run_on_store(settings, lambda state: run_demo(state, scope=scope, echo=click.echo, store=settings.masked_url))
