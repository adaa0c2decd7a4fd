"""Create papers, sightings and the fetch log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('papers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('arxiv_id', sa.String(length=64), nullable=True),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('title_norm', sa.String(length=512), nullable=False),
    sa.Column('abstract', sa.Text(), nullable=False),
    sa.Column('authors', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('abs_url', sa.Text(), nullable=True),
    sa.Column('pdf_url', sa.Text(), nullable=True),
    sa.Column('code_url', sa.Text(), nullable=True),
    sa.Column('announce_type', sa.String(length=32), nullable=True),
    sa.Column('published_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('upvotes', sa.Integer(), nullable=True),
    sa.Column('num_comments', sa.Integer(), nullable=True),
    sa.Column('github_repo', sa.Text(), nullable=True),
    sa.Column('github_stars', sa.Integer(), nullable=True),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('thumbnail_url', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_papers')),
    sa.UniqueConstraint('key', name=op.f('uq_papers_key'))
    )
    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_papers_arxiv_id'), ['arxiv_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_papers_first_seen_at'), ['first_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_papers_title_norm'), ['title_norm'], unique=False)

    op.create_table('sightings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('paper_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('guid', sa.Text(), nullable=True),
    sa.Column('announce_type', sa.String(length=32), nullable=True),
    sa.Column('first_seen_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['paper_id'], ['papers.id'], name=op.f('fk_sightings_paper_id_papers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sightings')),
    sa.UniqueConstraint('paper_id', 'source', name=op.f('uq_sightings_paper_id_source'))
    )
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sightings_paper_id'), ['paper_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sightings_source'), ['source'], unique=False)

    op.create_table('fetch_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('started_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('etag', sa.Text(), nullable=True),
    sa.Column('last_modified', sa.Text(), nullable=True),
    sa.Column('entries_seen', sa.Integer(), nullable=False),
    sa.Column('entries_new', sa.Integer(), nullable=False),
    sa.Column('entries_updated', sa.Integer(), nullable=False),
    sa.Column('entries_invalid', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fetch_log'))
    )
    with op.batch_alter_table('fetch_log', schema=None) as batch_op:
        batch_op.create_index('ix_fetch_log_source_started', ['source', 'started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('fetch_log', schema=None) as batch_op:
        batch_op.drop_index('ix_fetch_log_source_started')

    op.drop_table('fetch_log')

    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sightings_source'))
        batch_op.drop_index(batch_op.f('ix_sightings_paper_id'))

    op.drop_table('sightings')

    with op.batch_alter_table('papers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_papers_title_norm'))
        batch_op.drop_index(batch_op.f('ix_papers_first_seen_at'))
        batch_op.drop_index(batch_op.f('ix_papers_arxiv_id'))

    op.drop_table('papers')
