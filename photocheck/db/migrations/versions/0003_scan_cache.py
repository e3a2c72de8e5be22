"""scan cache, resume and burst grouping: scans.cache_key/roots_key, photos.phash/cached_from

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scans') as batch:
        batch.add_column(sa.Column('cache_key', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('roots_key', sa.String(length=64), nullable=True))
        batch.create_index('ix_scans_cache_key', ['cache_key'], unique=False)
        batch.create_index('ix_scans_roots_key', ['roots_key'], unique=False)
    with op.batch_alter_table('photos') as batch:
        batch.add_column(sa.Column('phash', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('cached_from', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('photos') as batch:
        batch.drop_column('cached_from')
        batch.drop_column('phash')
    with op.batch_alter_table('scans') as batch:
        batch.drop_index('ix_scans_roots_key')
        batch.drop_index('ix_scans_cache_key')
        batch.drop_column('roots_key')
        batch.drop_column('cache_key')
