"""Engine and session setup; migrations are applied automatically on open.

SQLite gets WAL (readers never block the scanner), foreign keys (cascading deletes of
biometric data actually happen), a busy timeout (two processes on one file wait, not fail) and
secure_delete (deleted rows are overwritten with zeros, so a forgotten encoding leaves no bytes).

PostgreSQL (postgresql+psycopg://...) needs no settings: its foreign keys always cascade and
readers never block writers. Its writers are serialised with a transaction-level advisory lock
(see Database.session), the same one-writer-at-a-time rule SQLite's BEGIN IMMEDIATE gives.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from photocheck import datadir

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest migration's revision id. Checked with one query on every open, so that a database
# already at head does not pay for importing Alembic (~0.2 s of every command).
# tests/test_db.py checks it is Alembic's head: bump it with each new migration.
HEAD_REVISION = "0009_stat_cache"

# pg_advisory_xact_lock keys (any 64-bit numbers, fixed forever): one for read-then-write
# transactions (sign-offs, audit appends...), one for migrations. Held until commit/rollback.
PG_WRITE_LOCK = 0x70686F746F636B01  # "photock" + 1
PG_MIGRATE_LOCK = 0x70686F746F636B02


class DatabaseError(Exception):
    """A database that cannot be opened or migrated (a configuration problem)."""


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


@dataclass
class Database:
    url: str
    engine: Engine
    sessionmaker: sessionmaker[Session]

    @contextmanager
    def session(self, *, immediate: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error.

        `immediate=True` takes SQLite's write lock up front (BEGIN IMMEDIATE). Use it for
        read-then-write transactions (sign-offs, audit appends): a deferred transaction that
        read first and then tries to write after another writer committed fails with "database
        is locked" instead of waiting; an immediate one waits its turn (busy_timeout) and then
        reads the other writer's result.

        On PostgreSQL it takes an exclusive transaction-level advisory lock first, so such
        transactions run one at a time across every client of the database (two reviewers on
        different machines included): each statement after the lock sees every earlier writer's
        commit (READ COMMITTED), so the loser of a race reads the winner's result, and the audit
        chain gets one event per seq. The lock goes with the commit or rollback.
        """
        with self.sessionmaker() as s, s.begin():
            if immediate and self.engine.dialect.name == "sqlite":
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            elif immediate:
                lock_for_write(s)
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


def lock_for_write(s: Session) -> None:
    """On PostgreSQL, take the writer lock in `s`'s transaction (see Database.session); taking it
    again in the same transaction is harmless. On SQLite the lock is BEGIN IMMEDIATE, which only
    a session opened with `immediate=True` can issue: nothing to do here."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [HEAD_REVISION]
    except Exception:  # no table yet (new database) or unreadable: let Alembic decide
        return False


def _upgrade(engine: Engine) -> bool:
    """Bring the schema to head; True if any migration ran."""
    if _at_head(engine):
        return False
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two clients opening a new database at once: one migrates, the other waits and
            # then finds it at head (Alembic reads the version after the lock).
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATE_LOCK})")
        before = MigrationContext.configure(conn).get_current_heads()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        after = MigrationContext.configure(conn).get_current_heads()
    return before != after


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open (creating if needed) the database at a SQLAlchemy URL and bring its schema to head."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        try:
            datadir.make_dir(path.parent)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {path.parent}: {exc}") from None
        if datadir.in_data_dir(path):
            try:  # SQLite gives its -wal, -shm and -journal files the database file's mode
                datadir.touch_private(path)
            except OSError as exc:
                raise DatabaseError(f"cannot create the database file {path}: {exc}") from None
    try:
        engine = create_engine(parsed)
    except Exception as exc:  # missing driver etc.
        raise DatabaseError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        try:
            if _upgrade(engine) and parsed.get_backend_name() == "sqlite":
                # A migration may have deleted biometric data (0004): get it out of the WAL too.
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:
            engine.dispose()
            raise DatabaseError(
                f"cannot open or migrate database {parsed.render_as_string(hide_password=True)}: {exc}"
            ) from exc
    return Database(url=url, engine=engine, sessionmaker=sessionmaker(engine, expire_on_commit=False))


def open_existing_database(url: str) -> Database | None:
    """Open a database only to read it, creating and migrating nothing (e.g. for a dry run).

    None when it does not exist yet or holds no tables; DatabaseError when it needs a migration.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or not Path(parsed.database).expanduser().is_file():
            return None
    db = open_database(url, migrate=False)
    if _at_head(db.engine):
        return db
    try:
        empty = not inspect(db.engine).get_table_names()
    except Exception as exc:
        db.dispose()
        raise DatabaseError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {exc}") from None
    db.dispose()
    if empty:
        return None
    raise DatabaseError("the database's schema is older than this photocheck: any command other than a dry run "
                        "upgrades it (e.g. `photocheck roster list`)")
