"""protect: encrypted reference encodings (key_id) and protection_events

Reference encodings stored before this revision are plaintext float64 vectors. They are
deleted here, never kept or converted: the migration has no key, and keeping them until a key
shows up would leave biometric data readable in the file. Their reference photos are marked
rejected with a reason telling to re-enroll, so the students show as UNPROTECTED (every photo
with a face goes to review) until `photocheck enroll` is run again. SQLite's secure_delete
(set on every connection) zeroes the deleted bytes; open_database checkpoints the WAL after.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

REENROLL = "encoding deleted by the upgrade to encrypted storage: run `photocheck enroll` again"


def upgrade() -> None:
    op.create_table(
        "protection_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    conn = op.get_bind()
    n = conn.execute(sa.text("SELECT count(*) FROM reference_encodings")).scalar()
    if n:
        conn.execute(sa.text("UPDATE reference_photos SET accepted = :no, reason = :r "
                             "WHERE id IN (SELECT reference_photo_id FROM reference_encodings)"),
                     {"no": False, "r": REENROLL})  # a bound False: 0 on SQLite, false on PostgreSQL
        conn.execute(sa.text("DELETE FROM reference_encodings"))
        conn.execute(sa.text("INSERT INTO protection_events (at, actor, action, detail) "
                             "VALUES (CURRENT_TIMESTAMP, 'photocheck', 'upgrade', :d)"),
                     {"d": f"{n} unencrypted reference encoding(s) deleted; re-enroll the students"})
    with op.batch_alter_table("reference_encodings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    # Encrypted encodings mean nothing to the old schema: they go too.
    op.execute("DELETE FROM reference_encodings")
    with op.batch_alter_table("reference_encodings", schema=None) as batch_op:
        batch_op.drop_column("key_id")
    op.drop_table("protection_events")
