"""Alembic migrations, configured in code so they run from the installed package.

Why no ``alembic.ini``: the service upgrades its own database at start-up, and
``zstack db upgrade`` does the same from any working directory; both only need
the package. Each caller passes its engine, so tests migrate their own database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade_database"]

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(engine: Engine) -> Config:
    """Alembic config bound to ``engine`` (env.py takes the connection from attributes).

    Alembic's options go through ``configparser`` interpolation: a ``%`` (a password
    with an escaped character, ``p%40ss``, or a folder named ``50%``) is doubled, or
    setting the option fails and the service cannot start.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    url = engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)
