"""An edit that voids an approval is told in the team channel, naming who had approved."""

from __future__ import annotations

import httpx
from wavecast_tools.fakes.slack import SlackFake

from app.auth.models import Scope
from app.main import create_app
from app.notify.dispatch import OutboxDeps, dispatch
from app.notify.kinds import Kind
from app.notify.models import OutboxStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.notify.support import CHANNEL, slack_rows
from tests.support import add_devices, campaign_body


async def test_an_edit_after_the_approval_is_told_naming_the_approver(
    db: Runtime,
    make_person: PersonMaker,
    make_key: KeyMaker,
    outbox: OutboxDeps,
    slack_fake: SlackFake,
) -> None:
    await add_devices(db, 20)
    author = bearer(await make_key(Scope.admin, person=await make_person("Author")))
    approver_person = await make_person("Grace Approver")
    approver = bearer(
        await make_key(Scope.campaigns_approve, Scope.campaigns_read, person=approver_person)
    )
    settings = db.settings.model_copy(update={"approval_required_above": 10})
    app = create_app(settings, runtime=Runtime(settings, db.engine, db.sessionmaker, db.redis))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        created = await client.post("/v1/campaigns", json=campaign_body(), headers=author)
        campaign_id = created.json()["id"]
        approved = await client.post(f"/v1/campaigns/{campaign_id}/approve", headers=approver)
        assert approved.status_code == 200, approved.text
        edited = await client.patch(
            f"/v1/campaigns/{campaign_id}",
            json={"name": "November statement, second copy"},
            headers=author,
        )
        assert edited.status_code == 200, edited.text
    await dispatch(outbox)
    rows = await slack_rows(db)
    voided = [r for r in rows if r.kind == Kind.approval_voided]
    assert len(voided) == 1 and voided[0].status == OutboxStatus.sent
    # Told after the approval it voids, in the log's order.
    kinds = [r.kind for r in rows]
    assert kinds.index(Kind.approval_approved) < kinds.index(Kind.approval_voided)
    message = next(m for m in slack_fake.posted(CHANNEL) if m.ts == voided[0].slack_ts)
    blocks = str(message.blocks)
    assert "Approval voided by an edit" in (message.text or "")
    assert "Had been approved by" in blocks and "Grace Approver" in blocks
    assert f"audit #{voided[0].audit_sequence}" in blocks
