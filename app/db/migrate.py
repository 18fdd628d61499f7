"""Running Alembic from code (the CLI, `wavecast run`, tests)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from alembic import command

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    """Raise if the models and the migrations disagree."""
    command.check(alembic_config(database_url))


@dataclass(frozen=True)
class SchemaBehind:
    """The database's schema is not at the migrations' head: `current` is what its
    alembic_version says (empty when it was never migrated)."""

    current: tuple[str, ...]
    head: tuple[str, ...]

    def __str__(self) -> str:
        at = ", ".join(self.current) or "no migrations"
        return (
            f"the schema is not at the latest version (at {at}, latest {', '.join(self.head)}); "
            "run `wavecast migrate`"
        )


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """The migrations' head(s), read once: the scripts do not change while a process runs."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config("")).get_heads()))


def schema_behind(connection: Connection) -> SchemaBehind | None:
    """None when the database is at the head revision; for `run_sync` on a connection.

    A database without an alembic_version table reads as never migrated, not as an error."""
    current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    head = head_revisions()
    return None if current == head else SchemaBehind(current, head)
