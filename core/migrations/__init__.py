"""Alembic migrations of the app database (``suifang db upgrade``)."""
