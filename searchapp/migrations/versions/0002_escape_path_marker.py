"""Escape the path marker: stored paths may now hold undecodable file-name bytes.

Paths are stored through ``store.encode_path`` from this revision on: a byte that is not
UTF-8 becomes U+F8FF + two hex digits and a literal U+F8FF is doubled. Names written by
0001 were stored as they are, so any U+F8FF in them is doubled here to read back the same.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MARK = "char(63743)"  # U+F8FF


def upgrade() -> None:
    for table, column in (("roots", "path"), ("photos", "path"), ("photos", "folder")):
        op.execute(
            f"UPDATE {table} SET {column} = replace({column}, {MARK}, {MARK} || {MARK}) "
            f"WHERE instr({column}, {MARK}) > 0"
        )


def downgrade() -> None:
    for table, column in (("roots", "path"), ("photos", "path"), ("photos", "folder")):
        op.execute(
            f"UPDATE {table} SET {column} = replace({column}, {MARK} || {MARK}, {MARK}) "
            f"WHERE instr({column}, {MARK}) > 0"
        )
