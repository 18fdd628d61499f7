"""Both fakes started from their command line, driven by the real clients, read over HTTP."""

from __future__ import annotations

import warnings
from pathlib import Path

import httpx
import pytest
from aioapns import NotificationRequest, PushType
from firebase_admin import messaging
from wavecast_tools.fakes.clients import apns_client_for, close_firebase_app, firebase_app_for

from .support import FakeProcess


def read_text(path: str) -> str:
    return Path(path).read_text()


async def test_fcm_command_serves_firebase_admin_and_introspection(tmp_path: Path) -> None:
    args = ["--port", "0", "--tls", "--cert-dir", str(tmp_path / "tls")]
    args += ["--service-account", str(tmp_path / "sa.json"), "--project-id", "cli-project"]
    fake = FakeProcess("wavecast_tools.fakes.fcm", *args)
    try:
        info = fake.info
        assert info["written_service_accounts"] == [str(tmp_path / "sa.json")]
        assert info["url"].startswith("https://127.0.0.1:")
        assert info["token_uri"] == info["plain_url"] + "/token"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SSL_CERT_FILE", info["ca_file"])
            app = firebase_app_for(tmp_path / "sa.json", info["url"], name="cli-fcm")
        async with httpx.AsyncClient(base_url=info["plain_url"]) as control:
            rule = {"token": "gone", "error": "UNREGISTERED"}
            assert (await control.post("/_fake/rules", json=rule)).status_code == 200
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                batch = [messaging.Message(token=t, data={"k": "v"}) for t in ("ok", "gone")]
            try:
                response = await messaging.send_each_async(batch, app=app)
            finally:
                await close_firebase_app(app)
            assert [r.success for r in response.responses] == [True, False]
            assert isinstance(response.responses[1].exception, messaging.UnregisteredError)

            page = (await control.get("/_fake/records", params={"endpoint": "send"})).json()
            by_token = {r["token"]: r for r in page["records"]}
            assert by_token["ok"]["status"] == 200
            assert by_token["ok"]["protocol"] == "h2"
            assert by_token["ok"]["payload"]["message"]["data"] == {"k": "v"}
            assert by_token["gone"]["reason"] == "UNREGISTERED"
            stats = (await control.get("/_fake/stats")).json()
            assert stats["received"] == 3  # one token exchange, two sends
            assert (await control.post("/_fake/reset")).status_code == 200
            assert (await control.get("/_fake/rules")).json() == {"rules": []}
    finally:
        assert fake.stop() == 0


async def test_apns_command_serves_aioapns_and_introspection(tmp_path: Path) -> None:
    args = ["--port", "0", "--plain-port", "0", "--cert-dir", str(tmp_path / "tls")]
    args += ["--key-file", str(tmp_path / "AuthKey.p8"), "--environment", "production"]
    args += ["--topic", "com.example.cli"]
    fake = FakeProcess("wavecast_tools.fakes.apns", *args)
    try:
        info = fake.info
        assert info["environment"] == "production"
        # Restarting with the same files keeps the identity a client was configured with.
        assert (tmp_path / "AuthKey.p8.json").exists()
        client = apns_client_for(
            info["url"],
            key_pem=read_text(info["key_file"]),
            key_id=info["key_id"],
            team_id=info["team_id"],
            topic="com.example.cli",
            ca_file=Path(info["ca_file"]),
            use_sandbox=False,
        )
        async with httpx.AsyncClient(base_url=info["plain_url"]) as control:
            rule = {"token_prefix": "00", "error": "TooManyRequests", "count": 1}
            assert (await control.post("/_fake/rules", json=rule)).status_code == 200
            try:
                limited = await client.send_notification(
                    NotificationRequest(
                        "00" * 32, {"aps": {"alert": "x"}}, push_type=PushType.ALERT
                    )
                )
                ok = await client.send_notification(
                    NotificationRequest(
                        "00" * 32, {"aps": {"alert": "x"}}, push_type=PushType.ALERT
                    )
                )
            finally:
                client.pool.close()
            assert (limited.status, limited.description, ok.status) == (
                "429",
                "TooManyRequests",
                "200",
            )
            records = (await control.get("/_fake/records")).json()["records"]
            assert [(r["status"], r["protocol"]) for r in records] == [(429, "h2"), (200, "h2")]
            assert records[0]["headers"]["apns-topic"] == "com.example.cli"
    finally:
        assert fake.stop() == 0

    again = FakeProcess("wavecast_tools.fakes.apns", *args)
    try:
        assert (again.info["key_id"], again.info["team_id"]) == (info["key_id"], info["team_id"])
    finally:
        again.stop()
