"""stat cache: file_stats (a file's last sha256 and its stat then) and scan_keys (a scan's cache key
for unchanged inputs, so an unchanged rescan needs neither the engine nor the decrypted encodings)

Revision ID: 0009_stat_cache
Revises: 0008_video
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_stat_cache"
down_revision = "0008_video"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_stats",
        sa.Column("path_key", sa.String(length=64), primary_key=True),
        sa.Column("device", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("ctime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("hashed_at_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "scan_keys",
        sa.Column("inputs_key", sa.String(length=64), primary_key=True),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("roster_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("listed_students", sa.Integer(), nullable=False),
        sa.Column("unprotected", sa.Text(), nullable=False),
        sa.Column("model_files", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scan_keys")
    op.drop_table("file_stats")
