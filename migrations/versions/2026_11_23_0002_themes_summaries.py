"""Create embeddings, theme assignments and summaries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('embeddings',
    sa.Column('paper_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('text_hash', sa.String(length=64), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['paper_id'], ['papers.id'], name=op.f('fk_embeddings_paper_id_papers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('paper_id', 'model', name=op.f('pk_embeddings'))
    )

    op.create_table('theme_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('paper_id', sa.Integer(), nullable=False),
    sa.Column('theme', sa.String(length=256), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=True),
    sa.Column('matched_keywords', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('themes_hash', sa.String(length=64), nullable=False),
    sa.Column('assigned_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['paper_id'], ['papers.id'], name=op.f('fk_theme_assignments_paper_id_papers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_theme_assignments')),
    sa.UniqueConstraint('paper_id', 'theme', name=op.f('uq_theme_assignments_paper_id_theme'))
    )
    with op.batch_alter_table('theme_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_theme_assignments_paper_id'), ['paper_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_theme_assignments_theme'), ['theme'], unique=False)

    op.create_table('summaries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=512), nullable=False),
    sa.Column('paper_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('grounded', sa.Boolean(), nullable=False),
    sa.Column('problems', sa.JSON(), nullable=False),
    sa.Column('cited_paper_ids', sa.JSON(), nullable=False),
    sa.Column('model', sa.String(length=512), nullable=False),
    sa.Column('backend', sa.String(length=64), nullable=False),
    sa.Column('prompt_version', sa.String(length=32), nullable=False),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['paper_id'], ['papers.id'], name=op.f('fk_summaries_paper_id_papers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_summaries')),
    sa.UniqueConstraint('kind', 'subject', 'source_hash', 'model', 'backend', 'prompt_version', name=op.f('uq_summaries_kind_subject_source_hash_model_backend_prompt_version'))
    )
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_summaries_paper_id'), ['paper_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_summaries_subject'), ['subject'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('summaries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_summaries_subject'))
        batch_op.drop_index(batch_op.f('ix_summaries_paper_id'))

    op.drop_table('summaries')

    with op.batch_alter_table('theme_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_theme_assignments_theme'))
        batch_op.drop_index(batch_op.f('ix_theme_assignments_paper_id'))

    op.drop_table('theme_assignments')

    op.drop_table('embeddings')
