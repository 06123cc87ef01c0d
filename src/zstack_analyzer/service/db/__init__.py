"""Database layer: typed models, engine/session factory, queries and Alembic migrations."""
