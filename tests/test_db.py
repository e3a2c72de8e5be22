"""The real database (SQLite and PostgreSQL): migrations, SQLite settings, and biometric data
going with the student."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from photocheck.db import open_database
from photocheck.db.models import ReferenceEncoding, ReferencePhoto, Student


@pytest.mark.backends("sqlite", "postgresql")
def test_migrations_create_schema_and_sqlite_pragmas(db_url: str, backend: str):
    db = open_database(db_url)
    tables = set(inspect(db.engine).get_table_names())
    assert {"students", "reference_photos", "reference_encodings", "scans", "photos", "faces",
            "roster_imports", "alembic_version", "audit_events", "audit_head", "protection_events"} <= tables
    if backend == "sqlite":
        with db.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    open_database(db_url).dispose()  # opening again is a no-op migration
    db.dispose()


@pytest.mark.backends("sqlite", "postgresql")


def test_removing_a_student_deletes_their_encodings(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    db = open_database(db_url)
    with db.session() as s:
        assert s.scalars(select(ReferenceEncoding)).all()
    empty = tmp_path / "empty.csv"
    empty.write_text("student_id,first_name,last_name,campus,grade,opt_out\n")
    assert "removed: D0001" in cli("roster", "import", empty).output
    with db.session() as s:
        assert s.scalars(select(Student)).all() == []
        assert s.scalars(select(ReferencePhoto)).all() == []
        assert s.scalars(select(ReferenceEncoding)).all() == []


def test_head_revision_constant_is_alembics_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from photocheck.db.session import HEAD_REVISION, MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD_REVISION]
