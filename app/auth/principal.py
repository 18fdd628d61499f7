"""Who is acting: the identity every request and job carries into the audit log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from app.auth.models import Scope


@dataclass(frozen=True)
class Principal:
    actor: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    key_id: uuid.UUID | None = None

    def has(self, scope: Scope) -> bool:
        # admin holds every right: it is the scope that hands rights out.
        return scope in self.scopes or Scope.admin in self.scopes


SYSTEM = Principal(actor="system", scopes=frozenset(Scope))


def cli_principal() -> Principal:
    import getpass

    return Principal(actor=f"cli:{getpass.getuser()}", scopes=frozenset(Scope))
