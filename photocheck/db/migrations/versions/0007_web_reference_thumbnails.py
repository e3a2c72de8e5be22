"""reference_thumbnails: encrypted face thumbnails of reference photos, for the web review's evidence

Revision ID: 0007_web
Revises: 0006_text
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_web"
down_revision = "0006_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_thumbnails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference_photo_id", sa.Integer(), nullable=False),
        sa.Column("student_pk", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reference_photo_id"], ["reference_photos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["student_pk"], ["students.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference_photo_id"),
    )
    op.create_index("ix_reference_thumbnails_student_pk", "reference_thumbnails", ["student_pk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reference_thumbnails_student_pk", table_name="reference_thumbnails")
    op.drop_table("reference_thumbnails")
