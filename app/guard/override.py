"""What an operator's override of the content lint is bound to (SPEC §3, rule 2).

An override approves one message as the lint judged it, nothing more. Its binding is a
SHA-256 over a canonical JSON of two things:

* the campaign's whole stored content (title, body, data, deep link, platform options, locale
  variants, TTL...), exactly as the worker will read and send it. The whole content rather
  than the linted text fields alone: the person who overrode read a message, and any edit to
  what reaches phones is a message they did not read;
* the lint's findings on that content, as (code, field, match), sorted. Codes are stable by
  contract (``app.guard.lint.LintCode``) and field and match say exactly which text tripped
  which rule, so the same content judged the same way always binds the same. Messages are
  left out: they are wording, and rewording one must not void every override in flight.
  Findings are in at all because a lint that learns a new rule may find, in unchanged
  content, a reason the operator never saw; the override did not cover it, so it no longer
  holds (the campaign stops until someone overrides again, knowing the new finding).

The API stores the binding with the override and the worker recomputes it before sending;
an override whose binding differs from the content's current one counts as no override.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.campaigns.schemas import Content
from app.guard.lint import LintFinding, lint_content

# Changes whenever what goes into the binding changes, so an old binding never matches a
# new scheme by accident.
BINDING_SCHEME = "wavecast.guard-override.v1"


@dataclass(frozen=True)
class ContentJudgement:
    """The lint's findings on a stored content and the binding an override must carry."""

    findings: tuple[LintFinding, ...]
    binding: str


def judge_content(content: Mapping[str, Any]) -> ContentJudgement:
    """Lint ``content`` (the stored JSON) and compute its override binding.

    Raises ``pydantic.ValidationError`` when ``content`` is not valid campaign content.
    """
    findings = tuple(lint_content(Content.model_validate(content).text_fields()))
    canonical = json.dumps(
        {
            "scheme": BINDING_SCHEME,
            "content": content,
            "findings": sorted({(f.code, f.field, f.match) for f in findings}),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return ContentJudgement(
        findings=findings, binding=hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    )


def standing_reason(
    reason: str | None, binding: str | None, judgement: ContentJudgement
) -> str | None:
    """The override's reason if it still covers the judged content, else None.

    An override without a binding (one stored before bindings existed, or written by another
    road) covers nothing: there is no telling what it approved.
    """
    if not reason or not reason.strip() or binding is None:
        return None
    return reason if binding == judgement.binding else None
