"""The migrations build exactly the schema the models declare (every area adds both)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from keyless.store.db import open_database
from keyless.store.models import Base
from tests.conftest import fresh_database_url


def test_migrations_match_models(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path)
    try:
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.engine.dispose()
    assert differences == []
