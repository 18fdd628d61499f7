"""The opens budget and the wave checks on the form: created with a campaign, edited and
removed on its edit page, refused beside their inputs with what was typed kept and nothing
saved, and shown on the campaign page; through the real app (httpx) and one Chromium."""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns import service
from app.campaigns.models import Campaign
from app.checks.spec import check_list
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body
from tests.ui.browser import no_horizontal_scroll, shot
from tests.ui.browser import sign_in as browser_sign_in
from tests.ui.support import form_token, sign_in
from tests.ui.test_campaign_form import form_fields, text_between

WRITER = (Scope.campaigns_read, Scope.campaigns_write)

# Two checks and a blank row (the form always offers one more).
CHECK_ROWS: dict[str, list[str]] = {
    "check_name": ["tap surge", "backend errors", ""],
    "check_source": ["builtin", "prometheus", "builtin"],
    "check_builtin": ["opens_per_second", "opens_per_second", "opens_per_second"],
    "check_url": ["", "http://prometheus:9090", ""],
    "check_query": ["", 'sum(rate(http_errors_total{job="api"}[1m]))', ""],
    "check_json_field": ["", "", ""],
    "check_op": ["lt", "lt", "lt"],
    "check_bound": ["400", "0.02", ""],
    "check_op2": ["", "gte", ""],
    "check_bound2": ["", "0", ""],
    "check_interval": ["", "15", ""],
    "check_failure_limit": ["", "2", ""],
}
STORED_CHECKS = [
    {
        "name": "tap surge",
        "builtin": "opens_per_second",
        "pass_when": {"lt": 400.0},
        "interval_seconds": 10,
        "failure_limit": 1,
    },
    {
        "name": "backend errors",
        "prometheus": {
            "url": "http://prometheus:9090",
            "query": 'sum(rate(http_errors_total{job="api"}[1m]))',
        },
        "pass_when": {"lt": 0.02, "gte": 0.0},
        "interval_seconds": 15,
        "failure_limit": 2,
    },
]


def with_checks(token: str, **overrides: object) -> dict[str, object]:
    return form_fields(token, **{"max_opens_per_second": "300", **CHECK_ROWS, **overrides})


def changed_row(row: int, **columns: str) -> dict[str, list[str]]:
    """CHECK_ROWS with row `row`'s columns replaced."""
    rows = {name: list(values) for name, values in CHECK_ROWS.items()}
    for name, value in columns.items():
        rows[name][row] = value
    return rows


async def all_campaigns(db: Runtime) -> list[Campaign]:
    async with db.sessionmaker() as session:
        return list((await session.exec(select(Campaign))).all())


async def one_campaign(db: Runtime, campaign_id: uuid.UUID | str) -> Campaign:
    async with db.sessionmaker() as session:
        return (
            await session.exec(select(Campaign).where(Campaign.id == uuid.UUID(str(campaign_id))))
        ).one()


async def edits(db: Runtime, campaign_id: uuid.UUID | str) -> int:
    async with db.sessionmaker() as session:
        rows = await session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "campaign.edited", AuditEvent.subject_id == str(campaign_id)
            )
        )
        return len(rows.all())


def errors_for(text: str, name: str) -> str:
    return text_between(text, f'id="err-{name.replace(".", "-")}"', "</ul>")


async def created(client: httpx.AsyncClient, token: str, **overrides: object) -> str:
    answer = await client.post("/ui/campaigns/new", data=with_checks(token, **overrides))
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"].rsplit("/", 1)[1])


# ---------------------------------------------------------------- create
async def test_the_form_creates_a_campaign_with_an_opens_budget_and_checks(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    campaign_id = await created(client, token)
    campaign = await one_campaign(db, campaign_id)
    assert campaign.throttle_per_second == 500
    assert campaign.max_opens_per_second == 300
    assert campaign.checks == STORED_CHECKS

    page = (await client.get(f"/ui/campaigns/{campaign_id}")).text
    assert re.search(r'id="opens-budget-set">\s*300 opens / s', page)
    table = text_between(page, 'id="declared-checks"', "</table>")
    assert "tap surge" in table and "built-in opens_per_second" in table
    assert "&lt; 400" in table
    assert "Prometheus http://prometheus:9090" in table
    assert "&lt; 0.02 and ≥ 0" in table and "15 s" in table and "2 failures in a row" in table
    # A writer is offered the edit page.
    assert 'id="edit-link"' in page


async def test_a_budget_alone_keeps_the_default_throttle(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    no_checks = {name: [""] for name in CHECK_ROWS}
    campaign_id = await created(client, token, throttle="", **no_checks)
    campaign = await one_campaign(db, campaign_id)
    assert (campaign.throttle_per_second, campaign.max_opens_per_second) == (100, 300)
    assert campaign.checks == []
    page = (await client.get(f"/ui/campaigns/{campaign_id}")).text
    assert 'id="no-checks"' in page


@pytest.mark.parametrize(
    ("typed", "message"),
    [("lots", "a whole number of opens per second"), ("0", "greater than or equal to 1")],
)
async def test_a_bad_budget_is_said_beside_it_and_nothing_is_created(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, typed: str, message: str
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    answer = await client.post(
        "/ui/campaigns/new", data=with_checks(token, max_opens_per_second=typed)
    )
    assert answer.status_code == 422, answer.text
    assert message in errors_for(answer.text, "max_opens_per_second")
    assert f'name="max_opens_per_second" value="{typed}"' in answer.text
    # The rest of the form is kept too: the checks as typed.
    assert 'value="backend errors"' in answer.text and 'value="0.02"' in answer.text
    assert await all_campaigns(db) == []


@pytest.mark.parametrize(
    ("row", "columns", "expected"),
    [
        # The URL rule the API applies (app.urls): no credentials in a check's URL.
        (1, {"check_url": "http://scraper:secret@prometheus:9090"}, "prometheus.url"),
        (0, {"check_bound": "four hundred"}, "pass when: a number"),
        (0, {"check_bound": ""}, "pass_when: Value error, pass_when needs at least one of"),
        (1, {"check_interval": "0"}, "interval_seconds: Input should be greater than or equal"),
        (1, {"check_failure_limit": "many"}, "failure_limit: Input should be a valid integer"),
        (1, {"check_source": "http"}, "http.json_field"),
        (0, {"check_name": "   "}, "name: String should have at least 1 character"),
    ],
)
async def test_a_bad_check_is_said_beside_its_row_and_nothing_is_created(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    row: int,
    columns: dict[str, str],
    expected: str,
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    typed = changed_row(row, **columns)
    answer = await client.post("/ui/campaigns/new", data=with_checks(token, **typed))
    assert answer.status_code == 422, answer.text
    assert expected in errors_for(answer.text, f"checks.{row}")
    assert errors_for(answer.text, f"checks.{1 - row}").count("<li>") == 0
    for value in columns.values():
        if value.strip():
            assert f'value="{html.escape(value)}"' in answer.text
    assert 'value="300"' in answer.text  # the budget as typed
    assert await all_campaigns(db) == []


async def test_two_checks_of_one_name_are_refused_for_the_list(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    typed = changed_row(1, check_name="tap surge")
    answer = await client.post("/ui/campaigns/new", data=with_checks(token, **typed))
    assert answer.status_code == 422
    assert "check names must be unique; &#39;tap surge&#39; appears twice" in errors_for(
        answer.text, "checks"
    )
    assert await all_campaigns(db) == []


async def test_a_check_named_like_a_deployment_default_is_refused_by_the_service(
    db: Runtime, make_key: KeyMaker
) -> None:
    defaults = check_list.validate_python(
        [{"name": "backend errors", "builtin": "failure_rate", "pass_when": {"lt": 0.05}}]
    )
    settings = db.settings.model_copy(update={"default_checks": defaults})
    app = create_app(settings, runtime=dataclasses.replace(db, settings=settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        token = await sign_in(client, await make_key(*WRITER))
        answer = await client.post("/ui/campaigns/new", data=with_checks(token))
        assert answer.status_code == 422, answer.text
        assert "is a deployment default check" in errors_for(answer.text, "checks.1")
        assert await all_campaigns(db) == []
        # The new-campaign page and a campaign page name the deployment's checks.
        campaign_id = await created(client, token, check_name=["tap surge", "api errors", ""])
        page = (await client.get(f"/ui/campaigns/{campaign_id}")).text
        assert "backend errors</strong> (&lt; 0.05)" in text_between(
            page, 'id="default-checks"', "</p>"
        )


async def test_the_live_preview_places_check_and_budget_errors(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    typed = changed_row(1, check_url="ftp://prometheus:9090")
    answer = await client.post(
        "/ui/api/campaigns/preview",
        data=with_checks("", max_opens_per_second="-3", **typed),
        headers={"X-CSRF-Token": token},
    )
    errors = answer.json()["errors"]
    assert answer.json()["ok"] is False
    assert errors["max_opens_per_second"] == [
        "a whole number of opens per second, or empty for no budget"
    ]
    fixed = await client.post(
        "/ui/api/campaigns/preview",
        data=with_checks("", **typed),
        headers={"X-CSRF-Token": token},
    )
    assert fixed.json()["ok"] is False
    assert any("prometheus.url" in m for m in fixed.json()["errors"]["checks.1"])


# ---------------------------------------------------------------- edit
def edit_fields(token: str, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "csrf": token,
        "throttle": "500",
        "max_opens_per_second": "300",
        "checks_shown": "yes",
        **CHECK_ROWS,
    }
    fields.update(overrides)
    return fields


async def test_the_edit_page_changes_and_removes_the_budget_and_checks(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    campaign_id = await created(client, token)
    url = f"/ui/campaigns/{campaign_id}/edit"

    shown = await client.get(url)
    assert shown.status_code == 200
    # Pre-filled as stored: the budget, each check and a blank row to add one.
    assert 'name="max_opens_per_second" value="300"' in shown.text
    assert 'value="backend errors"' in shown.text and 'value="0.02"' in shown.text
    assert shown.text.count('name="check_name"') == 3
    assert re.search(r'<option value="gte" selected>', shown.text)

    # Saved as shown: nothing changes, and no edit is recorded.
    same = await client.post(url, data=edit_fields(form_token(shown.text)))
    assert same.status_code == 303, same.text
    assert await edits(db, campaign_id) == 0

    # A new budget and bound, and the first check removed (its row emptied).
    rows = changed_row(1, check_bound="0.05", check_failure_limit="3")
    rows = {name: ["", *values[1:]] for name, values in rows.items()}
    rows["check_source"][0] = "builtin"
    answer = await client.post(url, data=edit_fields(token, max_opens_per_second="250", **rows))
    assert answer.status_code == 303, answer.text
    campaign = await one_campaign(db, campaign_id)
    assert campaign.max_opens_per_second == 250
    assert campaign.checks == [
        {**STORED_CHECKS[1], "pass_when": {"lt": 0.05, "gte": 0.0}, "failure_limit": 3}
    ]
    page = (await client.get(f"/ui/campaigns/{campaign_id}")).text
    assert re.search(r'id="opens-budget-set">\s*250 opens / s', page)
    assert "tap surge" not in text_between(page, 'id="declared-checks"', "</table>")
    assert await edits(db, campaign_id) == 1

    # Empty budget, every row empty: no budget, no checks.
    empty = {name: [""] for name in CHECK_ROWS}
    answer = await client.post(url, data=edit_fields(token, max_opens_per_second="", **empty))
    assert answer.status_code == 303, answer.text
    campaign = await one_campaign(db, campaign_id)
    assert (campaign.max_opens_per_second, campaign.checks) == (None, [])
    assert campaign.throttle_per_second == 500
    # The waves were carried back unchanged beside the new checks.
    async with db.sessionmaker() as session:
        waves = await service.waves(session, campaign.id)
    assert [(float(w.percent), w.hold_seconds) for w in waves] == [(1, 0), (5, 0), (100, 0)]


@pytest.mark.parametrize(
    ("name", "row", "typed", "field", "message"),
    [
        ("max_opens_per_second", None, "-5", "max_opens_per_second", "a whole number of opens"),
        ("max_opens_per_second", None, "2000000", "max_opens_per_second", "less than or equal"),
        ("throttle", None, "0", "throttle", "greater than or equal to 1"),
        ("throttle", None, "", "throttle", "a whole number of sends per second"),
        ("check_interval", 1, "99999", "checks.1", "interval_seconds: Input should be less"),
        ("check_url", 1, "http://prometheus:9090/#x", "checks.1", "prometheus.url: Value error"),
    ],
)
async def test_a_bad_edit_is_said_beside_it_and_nothing_is_saved(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    name: str,
    row: int | None,
    typed: str,
    field: str,
    message: str,
) -> None:
    token = await sign_in(client, await make_key(*WRITER))
    campaign_id = await created(client, token)
    change: dict[str, Any] = {name: typed} if row is None else changed_row(row, **{name: typed})
    answer = await client.post(
        f"/ui/campaigns/{campaign_id}/edit",
        data={**edit_fields(token, max_opens_per_second="450"), **change},
    )
    assert answer.status_code == 422, answer.text
    assert "Nothing was saved" in answer.text
    assert message in errors_for(answer.text, field)
    assert f'value="{typed}"' in answer.text
    campaign = await one_campaign(db, campaign_id)
    assert (campaign.max_opens_per_second, campaign.checks) == (300, STORED_CHECKS)
    assert await edits(db, campaign_id) == 0


async def test_a_running_campaign_changes_its_budget_but_not_its_checks(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    admin = await make_key(Scope.admin)
    body = campaign_body(
        throttle={"per_second": 200},
        rollout={
            "waves": [{"percent": 1, "hold_seconds": 600}, {"percent": 100}],
            "checks": [STORED_CHECKS[0]],
        },
    )
    made = await client.post("/v1/campaigns", json=body, headers=bearer(admin))
    assert made.status_code == 201, made.text
    campaign_id = made.json()["id"]
    started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=bearer(admin))
    assert started.status_code == 200, started.text

    token = await sign_in(client, await make_key(*WRITER))
    url = f"/ui/campaigns/{campaign_id}/edit"
    shown = await client.get(url)
    assert 'name="check_name"' not in shown.text  # shown, not editable
    assert "tap surge" in text_between(shown.text, 'id="declared-checks"', "</table>")
    answer = await client.post(
        url, data={"csrf": token, "throttle": "200", "max_opens_per_second": "120"}
    )
    assert answer.status_code == 303, answer.text
    assert (await one_campaign(db, campaign_id)).max_opens_per_second == 120
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=bearer(admin))).json()
    assert view["throttle"]["max_opens_per_second"] == 120

    # A form still posting changed checks (opened while it was a draft) is refused.
    stale = await client.post(url, data=edit_fields(token, throttle="200"))
    assert stale.status_code == 409, stale.text
    assert "not editable after the campaign left draft" in text_between(
        stale.text, 'id="form-problems"', "</div>"
    )
    campaign = await one_campaign(db, campaign_id)
    assert (campaign.max_opens_per_second, campaign.checks) == (120, [STORED_CHECKS[0]])


async def test_the_edit_page_needs_the_write_scope(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    writer_token = await sign_in(client, await make_key(*WRITER))
    campaign_id = await created(client, writer_token)
    async with httpx.AsyncClient(
        transport=client._transport, base_url=str(client.base_url)
    ) as reader:
        token = await sign_in(reader, await make_key(Scope.campaigns_read))
        page = (await reader.get(f"/ui/campaigns/{campaign_id}")).text
        assert 'id="edit-link"' not in page
        refused = await reader.post(
            f"/ui/campaigns/{campaign_id}/edit",
            data=edit_fields(token, max_opens_per_second="1"),
        )
        assert refused.status_code == 403
    assert (await one_campaign(db, campaign_id)).max_opens_per_second == 300


# ---------------------------------------------------------------- Chromium
@pytest.mark.slow
async def test_a_manager_sets_a_budget_and_checks_and_edits_them_in_chromium(
    browser_page: Any, make_key: KeyMaker, db: Runtime
) -> None:
    from playwright.async_api import expect

    page = browser_page
    await browser_sign_in(page, await make_key(*WRITER))
    await page.goto("/ui/campaigns/new")
    await page.fill("#name", "Budgeted statement")
    await page.fill("#title", "Your statement is ready")
    await page.fill("#body", "Log in to see your November statement.")
    await page.check('input[name="audience_mode"][value="everyone"]')
    await page.fill("#max_opens_per_second", "300")

    checks = page.locator("#checks > li")
    first = checks.nth(0)
    await first.locator('input[name="check_name"]').fill("tap surge")
    await expect(first.locator('input[name="check_url"]')).to_be_hidden()  # built-in
    await first.locator('input[name="check_bound"]').fill("400")
    await page.click('button[data-add-row="checks"]')
    await expect(checks).to_have_count(2)
    second = checks.nth(1)
    await second.locator('input[name="check_name"]').fill("api health")
    await second.locator('select[name="check_source"]').select_option("http")
    await expect(second.locator('input[name="check_url"]')).to_be_visible()
    await expect(second.locator('select[name="check_builtin"]')).to_be_hidden()
    await second.locator('input[name="check_url"]').fill("https://user:pw@api.bank/health")
    await second.locator('input[name="check_json_field"]').fill("p99_ms")
    await second.locator('select[name="check_op"]').select_option("lte")
    await second.locator('input[name="check_bound"]').fill("800")
    # The live preview says what is wrong with the URL beside its row.
    await expect(second.locator("[data-check-errors]")).to_contain_text("http.url")
    await no_horizontal_scroll(page)
    await shot(page, "40-new-campaign-checks")
    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await expect(page.locator("#form-problems")).to_be_visible()
    assert await all_campaigns(db) == []
    second = page.locator("#checks > li").nth(1)
    await expect(second.locator('input[name="check_url"]')).to_have_value(
        "https://user:pw@api.bank/health"
    )
    await second.locator('input[name="check_url"]').fill("https://api.bank/health")
    await page.locator("#campaign-form button[type=submit]").press("Enter")
    await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))

    (campaign,) = await all_campaigns(db)
    assert campaign.max_opens_per_second == 300
    assert [c["name"] for c in campaign.checks or []] == ["tap surge", "api health"]
    assert (campaign.checks or [])[1]["http"] == {
        "url": "https://api.bank/health",
        "json_field": "p99_ms",
    }
    await expect(page.locator("#opens-budget-set")).to_have_text("300 opens / s")
    await expect(page.locator('#declared-checks tr[data-check="api health"]')).to_contain_text(
        "≤ 800"
    )

    await page.click("#edit-link")
    await expect(page.locator("#max_opens_per_second")).to_have_value("300")
    await page.fill("#max_opens_per_second", "")
    rows = page.locator("#checks > li")
    await expect(rows).to_have_count(3)
    await no_horizontal_scroll(page)
    await shot(page, "41-edit-campaign-checks")
    await rows.nth(0).locator("button[data-remove-row]").click()
    await page.locator("#campaign-edit button[type=submit]").press("Enter")
    await page.wait_for_url(re.compile(r"/ui/campaigns/[0-9a-f-]{36}$"))
    await expect(page.locator("#opens-budget-set")).to_have_text("none")
    await expect(page.locator("#declared-checks tbody tr")).to_have_count(1)
    campaign = await one_campaign(db, campaign.id)
    assert campaign.max_opens_per_second is None
    assert [c["name"] for c in campaign.checks or []] == ["api health"]
