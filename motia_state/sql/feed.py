"""The database triggers that record every change of ``motia_state`` into ``motia_state_changes`` (SPEC §10).

Triggers, not the adapters, write the changes: a write made with plain SQL (psql, sqlite3, another program)
is recorded like one made through motia-state, in the same transaction as the write.

Postgres: one deferred constraint trigger per changed row. It runs at COMMIT, takes a transaction-level
advisory lock, then takes the revision from the sequence: committing writers take revisions one at a time,
in the order they commit, and a transaction becomes visible before it releases that lock. So a reader that
has seen revision R has also seen every revision below R: reading "revision > last" can never skip a change
that commits late (the classic outbox trap of sequence values taken at insert time). ``pg_notify`` wakes
the watches (once per transaction: identical notifications are folded).

SQLite: AFTER triggers. SQLite has one writer at a time, so AUTOINCREMENT revisions follow commit order.

The writer's trace context (``traceparent``, migration 0004): on Postgres the trigger reads it from the
transaction-local setting :data:`TRACE_SETTING`, which a traced write statement sets (the trigger runs at
COMMIT, so anywhere in the transaction will do); plain SQL sets nothing and records NULL. The SQLite triggers
stay plain SQL (no application function, so sqlite3 writers keep working): the adapter fills the column of a
traced write's changes in the same transaction.

Migration 0002 creates these; the adapters drop and re-create them when a store is switched to
``changes: off`` and back, so the text lives here, once. Changing it needs a new migration. A store in its
own schema (``schema:``) gets its own function, lock key and NOTIFY channel, all names qualified; the
store on the search_path keeps the original text.
"""

from __future__ import annotations

import hashlib
from typing import Final

from . import CHANGES_TABLE, TABLE_NAME, qualified, quote_literal

__all__ = [
    "NOTIFY_CHANNEL",
    "POSTGRES_CREATE",
    "POSTGRES_DISABLE",
    "POSTGRES_DROP",
    "POSTGRES_ENABLE",
    "POSTGRES_TRIGGER",
    "SQLITE_CREATE",
    "SQLITE_DROP",
    "SQLITE_TRIGGERS",
    "TRACE_SETTING",
    "notify_channel",
    "postgres_create",
    "postgres_drop",
    "postgres_switch",
]

C: Final = CHANGES_TABLE
T: Final = TABLE_NAME

#: The LISTEN/NOTIFY channel the Postgres trigger notifies at each commit that recorded changes.
NOTIFY_CHANNEL: Final = "motia_state_changes"
#: The advisory lock key serializing the commits that take revisions ('motia' as ASCII, as a bigint).
ADVISORY_LOCK: Final = 0x6D6F746961
# A store in its own schema takes a lock of the two-int keyspace ('moti', the schema's hash): stores in two
# schemas of one database never wait for each other's commits.
_SCHEMA_LOCK_CLASS: Final = 0x6D6F7469
POSTGRES_FUNCTION: Final = "motia_state_record_change"
POSTGRES_TRIGGER: Final = "motia_state_record_change"


def notify_channel(schema: str | None) -> str:
    """The NOTIFY channel of the store in ``schema``: one per schema, so two stores never wake each other.

    At most 63 bytes (Postgres' identifier limit); a schema too long for ``<schema>.motia_state_changes``
    gets a hash of its name instead.
    """
    if schema is None:
        return NOTIFY_CHANNEL
    channel = f"{schema}.{NOTIFY_CHANNEL}"
    if len(channel.encode()) <= 63:
        return channel
    return f"{NOTIFY_CHANNEL}_{hashlib.sha1(schema.encode()).hexdigest()[:20]}"


def _lock_call(schema: str | None) -> str:
    if schema is None:
        return f"pg_advisory_xact_lock({ADVISORY_LOCK})"
    signed = int.from_bytes(hashlib.sha1(schema.encode()).digest()[:4], "big", signed=True)
    return f"pg_advisory_xact_lock({_SCHEMA_LOCK_CLASS}, {signed})"


#: The transaction-local setting a traced write puts its traceparent in (``set_config(TRACE_SETTING, tp, true)``),
#: which the Postgres trigger reads at commit: a traceparent for every row, or a JSON object ``{scope: {key:
#: traceparent}}`` when one statement wrote the rows of several callers (a batch).
TRACE_SETTING: Final = "motia_state.trace"


def postgres_create(schema: str | None, *, traceparent: bool = True) -> tuple[str, str]:
    """The function and the constraint trigger recording the changes of the store in ``schema``.

    Every name is qualified (the function runs with the writer's search_path, whatever it is).
    ``traceparent=False``: the text of migration 0002 (before the ``traceparent`` column, migration 0004).
    """
    changes, table = qualified(C, schema), qualified(T, schema)
    function = qualified(POSTGRES_FUNCTION, schema)
    channel = quote_literal(notify_channel(schema))
    if traceparent:
        insert = f"INSERT INTO {changes} (event, scope, key, old_value, new_value, at, traceparent) VALUES"
        # NULL when unset (never set in this session: missing_ok) or blank (set in an earlier transaction).
        declare = f"""DECLARE
    tp text := NULLIF(current_setting('{TRACE_SETTING}', true), '');
"""
        # A batch's setting maps each row's scope and key to its writer's traceparent (absent: not traced).
        lookup = """
    IF left(tp, 1) = '{' THEN
        IF TG_OP = 'DELETE' THEN
            tp := tp::jsonb -> OLD.scope ->> OLD.key;
        ELSE
            tp := tp::jsonb -> NEW.scope ->> NEW.key;
        END IF;
    END IF;"""
        at = "clock_timestamp(), tp"
    else:
        insert = f"INSERT INTO {changes} (event, scope, key, old_value, new_value, at) VALUES"
        declare = lookup = ""
        at = "clock_timestamp()"
    return (
        f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
{declare}BEGIN
    -- At commit (the trigger is deferred): one committing transaction at a time takes revisions.
    PERFORM {_lock_call(schema)};{lookup}
    IF TG_OP = 'INSERT' THEN
        {insert} ('created', NEW.scope, NEW.key, NULL, NEW.value, {at});
    ELSIF TG_OP = 'DELETE' THEN
        {insert} (CASE WHEN OLD.expires_at IS NOT NULL AND OLD.expires_at <= now()
                           THEN 'expired' ELSE 'deleted' END,
                      OLD.scope, OLD.key, OLD.value, NULL, {at});
    ELSIF OLD.scope IS DISTINCT FROM NEW.scope OR OLD.key IS DISTINCT FROM NEW.key THEN
        -- A rename made with plain SQL: the old entry goes, a new one comes.
        {insert} ('deleted', OLD.scope, OLD.key, OLD.value, NULL, {at});
        {insert} ('created', NEW.scope, NEW.key, NULL, NEW.value, {at});
    ELSIF OLD.expires_at IS NOT NULL AND OLD.expires_at <= now() THEN
        -- Overwriting an expired entry starts a new one.
        {insert} ('created', NEW.scope, NEW.key, NULL, NEW.value, {at});
    ELSE
        {insert} ('updated', NEW.scope, NEW.key, OLD.value, NEW.value, {at});
    END IF;
    PERFORM pg_notify({channel}, '');
    RETURN NULL;
END
$$""",
        f"""
CREATE CONSTRAINT TRIGGER {POSTGRES_TRIGGER}
AFTER INSERT OR UPDATE OR DELETE ON {table}
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION {function}()""",
    )


def postgres_drop(schema: str | None) -> tuple[str, str]:
    """Drop what :func:`postgres_create` made."""
    return (
        f"DROP TRIGGER IF EXISTS {POSTGRES_TRIGGER} ON {qualified(T, schema)}",
        f"DROP FUNCTION IF EXISTS {qualified(POSTGRES_FUNCTION, schema)}()",
    )


def postgres_switch(schema: str | None, enable: bool) -> str:
    """``changes: on/off`` on Postgres: the trigger stays defined but does not fire (``tgenabled = 'D'``)."""
    return f"ALTER TABLE {qualified(T, schema)} {'ENABLE' if enable else 'DISABLE'} TRIGGER {POSTGRES_TRIGGER}"


POSTGRES_CREATE: Final = postgres_create(None)
POSTGRES_DROP: Final = postgres_drop(None)
POSTGRES_DISABLE: Final = postgres_switch(None, False)
POSTGRES_ENABLE: Final = postgres_switch(None, True)

# SQLite's clock in the adapter's text format's order ('YYYY-MM-DD HH:MM:SS.SSS', UTC): compares with expires_at.
_NOW: Final = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_EXPIRED: Final = f"OLD.expires_at IS NOT NULL AND OLD.expires_at <= {_NOW}"
_SQ_INSERT: Final = f'INSERT INTO {C} (event, scope, "key", old_value, new_value, at)'

#: name -> CREATE TRIGGER statement.
SQLITE_TRIGGERS: Final = {
    "motia_state_changes_insert": f"""
CREATE TRIGGER IF NOT EXISTS motia_state_changes_insert AFTER INSERT ON {T} BEGIN
    {_SQ_INSERT} VALUES ('created', NEW.scope, NEW."key", NULL, NEW.value, {_NOW});
END""",
    "motia_state_changes_update": f"""
CREATE TRIGGER IF NOT EXISTS motia_state_changes_update AFTER UPDATE ON {T} BEGIN
    {_SQ_INSERT} SELECT 'deleted', OLD.scope, OLD."key", OLD.value, NULL, {_NOW}
        WHERE OLD.scope IS NOT NEW.scope OR OLD."key" IS NOT NEW."key";
    {_SQ_INSERT} SELECT
        CASE WHEN OLD.scope IS NOT NEW.scope OR OLD."key" IS NOT NEW."key" OR ({_EXPIRED})
             THEN 'created' ELSE 'updated' END,
        NEW.scope, NEW."key",
        CASE WHEN OLD.scope IS NOT NEW.scope OR OLD."key" IS NOT NEW."key" OR ({_EXPIRED})
             THEN NULL ELSE OLD.value END,
        NEW.value, {_NOW};
END""",
    "motia_state_changes_delete": f"""
CREATE TRIGGER IF NOT EXISTS motia_state_changes_delete AFTER DELETE ON {T} BEGIN
    {_SQ_INSERT} VALUES (CASE WHEN {_EXPIRED} THEN 'expired' ELSE 'deleted' END,
                         OLD.scope, OLD."key", OLD.value, NULL, {_NOW});
END""",
}
SQLITE_CREATE: Final = tuple(SQLITE_TRIGGERS.values())
SQLITE_DROP: Final = tuple(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS)
