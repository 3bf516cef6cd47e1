"""The app database: typed SQLAlchemy models, the session factory and Alembic migrations."""
