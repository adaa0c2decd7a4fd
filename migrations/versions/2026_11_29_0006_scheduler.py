"""Create the scheduler lease, the daemons list and the job run log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digest.models

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('daemons',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('started_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daemons'))
    )
    op.create_table('scheduler_lease',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('acquired_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('renewed_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_lease'))
    )
    op.create_table('job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('due_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('edition_date', sa.Date(), nullable=True),
    sa.Column('edition_id', sa.Integer(), nullable=True),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('started_at', digest.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', digest.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('papers_new', sa.Integer(), nullable=False),
    sa.Column('papers_updated', sa.Integer(), nullable=False),
    sa.Column('summaries_made', sa.Integer(), nullable=False),
    sa.Column('summaries_cached', sa.Integer(), nullable=False),
    sa.Column('summaries_fallback', sa.Integer(), nullable=False),
    sa.Column('messages_sent', sa.Integer(), nullable=False),
    sa.Column('messages_failed', sa.Integer(), nullable=False),
    sa.Column('messages_deferred', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['edition_id'], ['editions.id'], name=op.f('fk_job_runs_edition_id_editions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs'))
    )
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.create_index('ix_job_runs_job_due_at', ['job', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_runs_started_at'), ['started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runs_started_at'))
        batch_op.drop_index('ix_job_runs_job_due_at')

    op.drop_table('job_runs')
    op.drop_table('scheduler_lease')
    op.drop_table('daemons')
