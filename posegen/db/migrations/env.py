"""Alembic environment: migrates the database named by the settings (or the Config's URL)."""

from __future__ import annotations

from alembic import context

# Imported for their models: they register their tables on Base.metadata.
import posegen.db.community
import posegen.db.operations  # noqa: F401
from posegen.db.models import Base
from posegen.db.session import get_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(url) if url else get_engine()
    # The app's engine carries the SQLite pragmas (WAL, foreign keys): migrate through it.
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
