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

Migration 0002 creates these; the adapters drop and re-create them when a store is switched to
``changes: off`` and back, so the text lives here, once. Changing it needs a new migration.
"""

from __future__ import annotations

from typing import Final

from . import CHANGES_TABLE, TABLE_NAME

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
]

C: Final = CHANGES_TABLE
T: Final = TABLE_NAME

#: The LISTEN/NOTIFY channel the Postgres trigger notifies at each commit that recorded changes.
NOTIFY_CHANNEL: Final = "motia_state_changes"
#: The advisory lock key serializing the commits that take revisions ('motia' as ASCII, as a bigint).
ADVISORY_LOCK: Final = 0x6D6F746961
POSTGRES_FUNCTION: Final = "motia_state_record_change"
POSTGRES_TRIGGER: Final = "motia_state_record_change"

_PG_INSERT: Final = f"INSERT INTO {C} (event, scope, key, old_value, new_value, at) VALUES"

POSTGRES_CREATE: Final = (
    f"""
CREATE OR REPLACE FUNCTION {POSTGRES_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- At commit (the trigger is deferred): one committing transaction at a time takes revisions.
    PERFORM pg_advisory_xact_lock({ADVISORY_LOCK});
    IF TG_OP = 'INSERT' THEN
        {_PG_INSERT} ('created', NEW.scope, NEW.key, NULL, NEW.value, clock_timestamp());
    ELSIF TG_OP = 'DELETE' THEN
        {_PG_INSERT} (CASE WHEN OLD.expires_at IS NOT NULL AND OLD.expires_at <= now()
                           THEN 'expired' ELSE 'deleted' END,
                      OLD.scope, OLD.key, OLD.value, NULL, clock_timestamp());
    ELSIF OLD.scope IS DISTINCT FROM NEW.scope OR OLD.key IS DISTINCT FROM NEW.key THEN
        -- A rename made with plain SQL: the old entry goes, a new one comes.
        {_PG_INSERT} ('deleted', OLD.scope, OLD.key, OLD.value, NULL, clock_timestamp());
        {_PG_INSERT} ('created', NEW.scope, NEW.key, NULL, NEW.value, clock_timestamp());
    ELSIF OLD.expires_at IS NOT NULL AND OLD.expires_at <= now() THEN
        -- Overwriting an expired entry starts a new one.
        {_PG_INSERT} ('created', NEW.scope, NEW.key, NULL, NEW.value, clock_timestamp());
    ELSE
        {_PG_INSERT} ('updated', NEW.scope, NEW.key, OLD.value, NEW.value, clock_timestamp());
    END IF;
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END
$$""",
    f"""
CREATE CONSTRAINT TRIGGER {POSTGRES_TRIGGER}
AFTER INSERT OR UPDATE OR DELETE ON {T}
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION {POSTGRES_FUNCTION}()""",
)
POSTGRES_DROP: Final = (
    f"DROP TRIGGER IF EXISTS {POSTGRES_TRIGGER} ON {T}",
    f"DROP FUNCTION IF EXISTS {POSTGRES_FUNCTION}()",
)
#: ``changes: off`` on Postgres: the trigger stays defined but does not fire (``pg_trigger.tgenabled = 'D'``).
POSTGRES_DISABLE: Final = f"ALTER TABLE {T} DISABLE TRIGGER {POSTGRES_TRIGGER}"
POSTGRES_ENABLE: Final = f"ALTER TABLE {T} ENABLE TRIGGER {POSTGRES_TRIGGER}"

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
