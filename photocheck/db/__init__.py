"""Database: schema (models.py), engine/session setup and automatic migrations (session.py)."""
from photocheck.db.session import Database, open_database

__all__ = ["Database", "open_database"]
