"""stat cache: file_stats, the sha256 last computed for a file and its stat at that moment

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


def downgrade() -> None:
    op.drop_table("file_stats")
