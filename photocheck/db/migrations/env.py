"""Alembic environment: photocheck passes its own connection (see db/session.py)."""
from alembic import context

from photocheck.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when run through the alembic CLI without photocheck
    raise RuntimeError("run migrations through photocheck.db.open_database")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
