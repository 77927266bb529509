"""Record the generation at which each photo's vector last changed.

A vector index file saved at generation G lacks exactly the photos whose ``indexed_gen``
is above G (new or changed in place) and still holds the ones removed since: a stale
approximate file is brought up to date from those rows instead of being rebuilt. Rows
written before this revision get the library's current generation: a file older than
that re-adds them all once (still no retraining), a current one needs nothing.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("photos", sa.Column("indexed_gen", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE photos SET indexed_gen = (SELECT CAST(value AS INTEGER) FROM meta "
        "WHERE key = 'generation') WHERE status = 'indexed'"
    )
    op.create_index("ix_photos_indexed_gen", "photos", ["indexed_gen"])


def downgrade() -> None:
    op.drop_index("ix_photos_indexed_gen", "photos")
    with op.batch_alter_table("photos") as batch:
        batch.drop_column("indexed_gen")
