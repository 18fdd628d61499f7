"""Point the real client libraries at a fake (or any non-default endpoint).

Neither library has a supported endpoint override, so each function below names the exact
internal it relies on and fails loudly if a library upgrade removes it, instead of silently
sending to the real service. Wavecast's providers use the same code paths for their
``WAVECAST_FCM_ENDPOINT`` / ``WAVECAST_APNS_*_URL`` settings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioapns
import firebase_admin
from aioapns.connection import APNsBaseClientProtocol
from firebase_admin import credentials, messaging
from google.auth.transport.requests import Request as GoogleAuthRequest


def set_fcm_endpoint(app: Any, base_url: str) -> str:
    """Send ``app``'s FCM messages to ``base_url`` (``http[s]://host:port``); returns the URL.

    firebase-admin 7.7 has no emulator variable or option for FCM: the send URL is formatted
    once into ``_MessagingService._fcm_url`` when the app's messaging service is created.
    Replacing it on that per-app instance changes nothing else (other apps, the class constant
    ``FCM_URL``, topic management URLs). The HTTP client, retries and auth are untouched.
    """
    service = messaging._get_messaging_service(app)
    if not isinstance(getattr(service, "_fcm_url", None), str):
        raise RuntimeError("firebase-admin no longer has _MessagingService._fcm_url; re-check")
    project_id = service._project_id
    service._fcm_url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
    return str(service._fcm_url)


def disable_regional_access_boundary_lookup(credential: Any) -> bool:
    """Stop google-auth (>= 2.62) from calling ``iamcredentials.googleapis.com`` in background.

    After the first authorised request, google-auth starts a thread that looks up the service
    account's "regional access boundary" on Google's IAM API. Against a fake there is no such
    service (and no internet), so tests and benchmarks park the lookup in a cooldown that never
    ends. Returns False if the internals moved (then the lookup just fails and backs off).
    """
    manager = getattr(credential, "_rab_manager", None)
    data = getattr(manager, "_data", None)
    if manager is None or data is None or not hasattr(data, "_replace"):
        return False
    # google-auth compares this with its own *naive* UTC now (google.auth._helpers.utcnow), so
    # an aware value would raise on comparison; the naive maximum never expires.
    never = dt.datetime.max.replace(tzinfo=dt.UTC).replace(tzinfo=None)
    manager._data = data._replace(cooldown_expiry=never)
    return True


def firebase_app_for(
    service_account_file: Path,
    fcm_base_url: str,
    *,
    name: str,
    http_timeout: float = 30.0,
) -> Any:
    """A firebase-admin ``App`` using ``service_account_file`` and sending to ``fcm_base_url``.

    The token exchange goes wherever the file's ``token_uri`` says (the fake's, for files
    written by :func:`wavecast_tools.fakes.fcm.write_service_account`).
    """
    cred = credentials.Certificate(str(service_account_file))
    app = firebase_admin.initialize_app(cred, {"httpTimeout": http_timeout}, name=name)
    set_fcm_endpoint(app, fcm_base_url)
    disable_regional_access_boundary_lookup(cred.get_credential())
    return app


async def refresh_access_token(app: Any) -> None:
    """Exchange the service-account JWT for an access token *off* the event loop.

    firebase-admin's async client refreshes inside an httpx auth flow with a blocking
    ``requests`` call on the event-loop thread (first send, after a 401, near expiry). Doing it
    ahead of time in a worker thread keeps the loop free -- and is the only way an in-process fake
    on the same loop can answer it.
    """
    credential = app.credential.get_credential()
    await asyncio.to_thread(credential.refresh, GoogleAuthRequest())


def point_apns_client(client: Any, url: str) -> None:
    """Make an ``aioapns.APNs`` client connect to ``url`` (``https://host[:port]``).

    aioapns 4.0 takes host and port from class attributes of its protocol class
    (``APNS_SERVER``/``APNS_PORT``, chosen by ``use_sandbox``); the same ``APNS_SERVER`` is the
    TLS server name and the ``host`` header. We swap in a subclass on this client's pool only.
    TLS trust comes from the ``ssl_context`` given to ``APNs(...)``.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"APNs URL must be https://host[:port], not {url!r}")
    pool = client.pool
    base = pool.protocol_class
    if not (isinstance(base, type) and issubclass(base, APNsBaseClientProtocol)):
        raise RuntimeError("aioapns pool no longer has protocol_class; re-check")
    pool.protocol_class = type(
        f"{base.__name__}At{parts.port or 443}",
        (base,),
        {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port or 443},
    )


def apns_client_for(
    url: str,
    *,
    key_pem: str,
    key_id: str,
    team_id: str,
    topic: str,
    ca_file: Path | None,
    use_sandbox: bool,
    max_connections: int = 10,
    max_connection_attempts: int = 5,
) -> aioapns.APNs:
    """A token-auth ``aioapns.APNs`` client for ``url``, trusting ``ca_file`` (else system CAs).

    Must be called with a running event loop (aioapns grabs it in its constructor).
    ``key_pem`` is the ``.p8`` *content*: aioapns 4.0 hands it straight to PyJWT.
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    client = aioapns.APNs(
        key=key_pem,
        key_id=key_id,
        team_id=team_id,
        topic=topic,
        use_sandbox=use_sandbox,
        ssl_context=context,
        max_connections=max_connections,
        max_connection_attempts=max_connection_attempts,
    )
    point_apns_client(client, url)
    return client


async def close_firebase_app(app: Any) -> None:
    """Delete a firebase-admin app from async code.

    ``firebase_admin.delete_app`` closes the messaging service with ``asyncio.run(...)``, which
    raises inside a running loop. Close the httpx client on *this* loop first (its connections
    belong here), then delete the app from a worker thread, where ``asyncio.run`` is allowed and
    closing the already-closed client is a no-op.
    """
    service = messaging._get_messaging_service(app)
    await service._async_client.aclose()
    await asyncio.to_thread(firebase_admin.delete_app, app)
