"""Whose hands a means of approving passed through.

A second pair of eyes is only a second pair when the first could not have used it. An
author who holds `admin` can make a key for anyone and read the raw key in the answer, and
can bind anyone's Slack user; an approval given with such a key, or through such a binding,
may be the author's own. So each means names the people it passed through:

- a key: the person who made it, and whoever made the key that person made it with, back
  to a key no person made (the command line on the server, the system, or a key made
  before people existed);
- a Slack user binding: the person who set it, and the makers of the key they set it with;
- a person's being a human (only a human approves): who turned a service into one. An admin
  may hold a service's key made on the server (the installation's first key is one) and
  make its person human.

The audit log holds every step (`api_key.created`, `person.created`, `person.updated`, each
naming the person and the key that acted); `app.approval.repository` reads them and this
module only follows them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Origin:
    """Who made something, and with which key (None for either when no one or no key)."""

    person_id: uuid.UUID | None
    key_id: uuid.UUID | None


def key_makers(key_id: uuid.UUID | None, origins: Mapping[uuid.UUID, Origin]) -> set[uuid.UUID]:
    """The people `key_id` passed through: its maker, its maker's key's maker, and so on
    (`origins`: each key's origin). A key without a recorded origin ends the chain; a chain
    that comes back to a key already followed ends too."""
    found: set[uuid.UUID] = set()
    followed: set[uuid.UUID] = set()
    current = key_id
    while current is not None and current not in followed:
        followed.add(current)
        origin = origins.get(current)
        if origin is None:
            break
        if origin.person_id is not None:
            found.add(origin.person_id)
        current = origin.key_id
    return found


def keys_makers(keys: Iterable[uuid.UUID], origins: Mapping[uuid.UUID, Origin]) -> set[uuid.UUID]:
    """The people any of `keys` passed through (`key_makers` of each)."""
    made: set[uuid.UUID] = set()
    for key in keys:
        made |= key_makers(key, origins)
    return made


def origin_makers(origin: Origin | None, origins: Mapping[uuid.UUID, Origin]) -> set[uuid.UUID]:
    """The people something made at `origin` passed through: the person who made it and
    the makers of the key they made it with."""
    if origin is None:
        return set()
    made = key_makers(origin.key_id, origins)
    if origin.person_id is not None:
        made.add(origin.person_id)
    return made


@dataclass(frozen=True)
class PersonEvent:
    """One `person.created` or `person.updated` event, in the audit log's order."""

    origin: Origin
    action: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


def slack_binding_origin(slack_user_id: str | None, events: Iterable[PersonEvent]) -> Origin | None:
    """Who bound the person to `slack_user_id`, their current Slack user: the last event (of
    `events`, oldest first) that set it, or None when the person has no Slack user or no
    event set it (a person made before the audit log named people)."""
    if slack_user_id is None:
        return None
    setter: Origin | None = None
    for event in events:
        after = (event.after or {}).get("slack_user_id")
        before = (event.before or {}).get("slack_user_id")
        if after == slack_user_id and (event.action == "person.created" or before != after):
            setter = event.origin
    return setter


def made_human_origin(events: Iterable[PersonEvent]) -> Origin | None:
    """Who turned the person into a human from another kind: the last event (of `events`,
    oldest first) that changed `kind` to `human`, or None when none did (created a human,
    or not a human now)."""
    turned: Origin | None = None
    for event in events:
        if event.action != "person.updated":
            continue
        before = (event.before or {}).get("kind")
        after = (event.after or {}).get("kind")
        if after == "human" and before != "human":
            turned = event.origin
        elif after is not None and after != "human":
            turned = None
    return turned
