"""A command that fails for a reason of ours (not a refusal, not a Problem) is answered, or
followed up, "failed: see the service's logs" to the person alone, and logged with its
traceback: never a 500 to Slack, never silence. The failures are real ones, provoked through
the endpoints against the real database."""

from __future__ import annotations

import logging

import httpx
import pytest
from wavecast_tools.fakes.slack import SlackFake

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.notify.compose import CONFIRM_ACTION
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker
from tests.slack.support import command, press
from tests.slack.test_commands import _ephemeral, person, running
from tests.support import campaign_status, wait_for

FAILED = "failed: see the service's logs"


def _logged_failure(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    failures = [r for r in caplog.records if r.getMessage() == "a Slack command failed"]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert failures[0].exc_info is not None  # the traceback is in the log
    return failures[0]


async def test_a_button_press_that_fails_is_followed_up_and_logged(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    slack_fake: SlackFake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await person(make_person, make_key, "Grace", "UGRACE", Scope.admin)
    caplog.set_level(logging.ERROR, logger="wavecast.slack")
    # A request number beyond what the database's integer holds: reading it fails in the
    # driver (PostgreSQL and SQLite alike), not as a Problem.
    pressed = await press(slack_client, CONFIRM_ACTION, "9" * 20, "UGRACE")
    assert pressed.status_code == 200
    await wait_for(lambda: _ephemeral(slack_fake, "UGRACE", FAILED), within=5)
    _logged_failure(caplog)


async def test_a_slash_command_that_fails_within_slacks_wait_is_answered_and_logged(
    slack_client: httpx.AsyncClient,
    make_key: KeyMaker,
    make_person: PersonMaker,
    db: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL refuses a NUL character in text; SQLite stores it")
    await person(make_person, make_key, "Ada", "UADA", Scope.campaigns_operate)
    campaign = await running(slack_client, make_key, db)
    caplog.set_level(logging.ERROR, logger="wavecast.slack")
    answer = await command(slack_client, 'pause "bad\x00name" checking', "UADA")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"response_type": "ephemeral", "text": f":x: {FAILED}"}
    _logged_failure(caplog)
    assert await campaign_status(db, campaign) is CampaignStatus.running
