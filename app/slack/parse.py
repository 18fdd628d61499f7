"""The `/wavecast` slash command's words. Pure.

    /wavecast status
    /wavecast kill <campaign> <reason>
    /wavecast kill-all <reason>
    /wavecast pause <campaign> <reason>
    /wavecast resume <campaign> <reason>
    /wavecast release <reason>

<campaign> is a campaign's id, the first 8 or more characters of it, or its name in double
quotes ("November statement"). A reason is required wherever one is named: it goes to the
audit log and to the channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Verb(StrEnum):
    status = "status"
    kill = "kill"
    kill_all = "kill-all"
    pause = "pause"
    resume = "resume"
    release = "release"
    help = "help"


TAKES_CAMPAIGN = frozenset({Verb.kill, Verb.pause, Verb.resume})
TAKES_REASON = frozenset({Verb.kill, Verb.kill_all, Verb.pause, Verb.resume, Verb.release})
MAX_REASON = 1000

USAGE = (
    "Usage: `/wavecast status` · `/wavecast kill <campaign> <reason>` · "
    "`/wavecast kill-all <reason>` · `/wavecast pause <campaign> <reason>` · "
    "`/wavecast resume <campaign> <reason>` · `/wavecast release <reason>`. "
    "<campaign> is its id (or its first 8+ characters) or its name in double quotes."
)


@dataclass(frozen=True)
class Command:
    verb: Verb
    campaign: str | None = None
    reason: str | None = None


class CommandError(ValueError):
    """A command that cannot be run as written; the message says how to write it."""


_QUOTED = re.compile(r'"([^"]{1,200})"\s*(.*)', re.DOTALL)
# Slack writes quotes typed on a phone as curly ones.
_CURLY = str.maketrans({"“": '"', "”": '"'})


def parse(text: str) -> Command:
    words = text.translate(_CURLY).strip()
    if not words:
        return Command(Verb.help)
    head, _, rest = words.partition(" ")
    try:
        verb = Verb(head.lower())
    except ValueError:
        raise CommandError(f"unknown command {head!r}. {USAGE}") from None
    rest = rest.strip()
    campaign = None
    if verb in TAKES_CAMPAIGN:
        quoted = _QUOTED.fullmatch(rest)
        if quoted:
            campaign, rest = quoted[1].strip(), quoted[2].strip()
        else:
            campaign, _, rest = rest.partition(" ")
            rest = rest.strip()
        if not campaign:
            raise CommandError(f"`{verb}` needs a campaign and a reason. {USAGE}")
    if verb in TAKES_REASON:
        if not rest:
            raise CommandError(f"`{verb}` needs a reason: it goes to the audit log. {USAGE}")
        if len(rest) > MAX_REASON:
            raise CommandError(f"the reason is longer than {MAX_REASON} characters")
        return Command(verb, campaign, rest)
    if rest:
        raise CommandError(f"`{verb}` takes nothing more. {USAGE}")
    return Command(verb, campaign)
