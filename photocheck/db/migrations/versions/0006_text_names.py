"""text: students.preferred_name, photos.text_hits, publications.caption/caption_sha256

Revision ID: 0006_text
Revises: 0005
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_text"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("students") as batch:
        batch.add_column(sa.Column("preferred_name", sa.String(length=200), server_default="", nullable=False))
    with op.batch_alter_table("photos") as batch:
        batch.add_column(sa.Column("text_hits", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("publications") as batch:
        batch.add_column(sa.Column("caption", sa.Text(), nullable=True))
        batch.add_column(sa.Column("caption_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.drop_column("caption_sha256")
        batch.drop_column("caption")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("text_hits")
    with op.batch_alter_table("students") as batch:
        batch.drop_column("preferred_name")
