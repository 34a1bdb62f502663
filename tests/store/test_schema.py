"""The migrations build exactly the schema the models declare (every area adds both)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from keyless.store.db import MIGRATIONS, head_revision, open_database
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


def test_reopening_a_current_store_skips_alembic_and_an_older_one_is_migrated(tmp_path: Path) -> None:
    """open_database's fast path (issue #19): the migration files' head is Alembic's own, a store
    at that head opens without loading Alembic, and one a revision behind is still brought up."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    url = fresh_database_url()
    open_database(url, tmp_path).dispose()
    probe = ("import sys; from pathlib import Path; from keyless.store.db import MIGRATIONS, head_revision, open_database; "
             f"open_database({url!r}, Path({str(tmp_path)!r})).dispose(); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    # One revision behind (the newest migration undone by its own downgrade): Alembic runs again.
    db = open_database(url, tmp_path)
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() != head_revision()
    finally:
        db.dispose()
    db = open_database(url, tmp_path)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        db.dispose()
