"""The ``migrate`` command: the SQL schema through Alembic."""

from __future__ import annotations

import asyncio

import click

from ..errors import StateError
from .common import EXIT_USAGE, PROG, CLIFailure, Output, failure, target

__all__ = ["migrate_command"]


@click.command("migrate", short_help="Upgrade the SQL schema; --check reports, --sql prints SQL.")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@click.option("--check", is_flag=True, help="Only report: print pending revisions and exit 1 when out of date.")
@click.option("--sql", "sql", is_flag=True, help="Print the SQL of the upgrade instead of running it (for a DBA).")
@click.pass_context
def migrate_command(ctx: click.Context, revision: str, check: bool, sql: bool) -> None:
    """Bring the SQL schema (SQLite or Postgres) up to date with Alembic.

    Redis and memory stores have no schema: there is nothing to do.

    \b
    Examples:
      motia-state migrate
      motia-state migrate --check
      motia-state --url postgresql://app@db:5432/app migrate --sql > upgrade.sql
    """
    if check and sql:
        raise click.UsageError("--check and --sql cannot be combined", ctx)
    settings = target(ctx).settings()
    shown = settings.masked_url
    if not settings.backend.has_schema:
        if sql:
            raise CLIFailure(
                f"the {settings.kind} store at {shown} has no SQL schema; --sql needs sqlite or postgres", EXIT_USAGE
            )
        click.echo(f"{PROG}: the {settings.kind} store at {shown} has no schema to migrate", err=True)
        return

    from ..sql import migrate as migrations

    schema = settings.options.get("schema")  # Postgres in its own schema (schema: / ?schema=)
    try:
        if sql:
            click.echo(migrations.offline_sql(settings.store_url, revision, schema=schema), nl=False)
            return
        if check:
            todo = asyncio.run(migrations.pending(settings.store_url, schema=schema))
            for rev in todo:
                click.echo(rev)
            if todo:
                raise CLIFailure(
                    f"the schema at {shown} is out of date: {len(todo)} pending migration(s); run: {PROG} migrate"
                )
            click.echo(f"{PROG}: the schema at {shown} is up to date", err=True)
            return

        async def upgrade() -> object:
            await migrations.upgrade(settings.store_url, revision, schema=schema)
            return await migrations.current(settings.store_url, schema=schema)

        current = asyncio.run(upgrade())
    except StateError as exc:
        raise failure(exc, settings.url) from exc
    Output().value({"url": shown, "revision": current})
