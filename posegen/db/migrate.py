"""Run Alembic migrations from code, so `posegen db upgrade` needs no alembic.ini on disk."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from posegen.config import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url or get_settings().database)
    return config


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Upgrade to every head: feature branches of the schema may land independently."""
    command.upgrade(alembic_config(url), revision)
