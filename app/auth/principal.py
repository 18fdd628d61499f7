"""Who is acting: the identity every request and job carries into the audit log.

A principal names the person (human or service) behind the act, the key it used (none for
the system, the CLI or Slack) and the channel it came through; the audit log records all
three with every event (`app.audit.service.record`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from app.auth.models import Scope
from app.people.models import PersonKind


class Channel(StrEnum):
    api = "api"
    ui = "ui"
    slack = "slack"
    cli = "cli"
    system = "system"


@dataclass(frozen=True)
class Principal:
    actor: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    key_id: uuid.UUID | None = None
    person_id: uuid.UUID | None = None
    person_name: str | None = None
    # None when no person acts (the system, the CLI).
    person_kind: PersonKind | None = None
    channel: Channel = Channel.system
    # From Slack: the Slack user who acted (the person was found by it when the command or
    # button arrived; a rule judging the binding checks it still holds).
    slack_user_id: str | None = None

    def has(self, scope: Scope) -> bool:
        # admin holds every right: it is the scope that hands rights out.
        return scope in self.scopes or Scope.admin in self.scopes

    @property
    def is_human(self) -> bool:
        return self.person_id is not None and self.person_kind is PersonKind.human


SYSTEM = Principal(actor="system", scopes=frozenset(Scope), channel=Channel.system)


def cli_principal() -> Principal:
    import getpass

    return Principal(actor=f"cli:{getpass.getuser()}", scopes=frozenset(Scope), channel=Channel.cli)
