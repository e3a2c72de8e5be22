"""video clips: photos.kind and photos.duration_s, faces.time_s

Revision ID: 0008_video
Revises: 0007_web
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_video"
down_revision = "0007_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=10), server_default="photo", nullable=False))
        batch_op.add_column(sa.Column("duration_s", sa.Float(), nullable=True))
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("faces", schema=None) as batch_op:
        batch_op.drop_column("time_s")
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.drop_column("duration_s")
        batch_op.drop_column("kind")
