"""A fake Firebase Cloud Messaging HTTP v1 endpoint, with Google's OAuth2 token endpoint.

Speaks what ``firebase-admin`` 7.7 really sends:

- ``POST /token`` -- the service-account JWT-bearer grant google-auth performs
  (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>``). The JWT is
  verified against the public key of a service account registered with the fake; the answer is
  ``{"access_token", "expires_in", "token_type"}`` or Google's ``{"error": "invalid_grant", ...}``.
- ``POST /v1/projects/{project}/messages:send`` -- needs ``Authorization: Bearer <token>`` issued
  above (else 401 UNAUTHENTICATED), validates the message
  (:mod:`wavecast_tools.fakes.fcm_validation`), and
  answers ``{"name": "projects/{p}/messages/{id}"}`` or Google's error body
  ``{"error": {"code", "message", "status", "details": [FcmError...]}}``.

Transport facts (from httpx/httpcore as firebase-admin configures them): against an ``http://``
URL the client speaks **HTTP/1.1** (httpcore only uses cleartext HTTP/2 when HTTP/1.1 is
disabled, and firebase-admin leaves it enabled), over up to 100 pooled connections; against an
``https://`` URL it offers ALPN ``h2`` and multiplexes over one connection. This fake serves both
on whichever listener it has: HTTP/1.1, h2c with prior knowledge, and TLS with ALPN.

Run the fake in a background thread (``running_in_thread()``) or another process when the client
is in-process: google-auth exchanges the token with a *blocking* ``requests`` call made on the
event-loop thread, so a fake served by that same loop would deadlock.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wavecast_tools.fakes.base import ProtocolFake, json_reply
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.fcm_validation import Violation, check_size, validate_send_request
from wavecast_tools.fakes.records import Record, RecordingMode
from wavecast_tools.fakes.server import Reply, Request
from wavecast_tools.fakes.tls import TlsFiles

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MESSAGING_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)

_SEND_PATH = re.compile(r"^/v1/projects/([^/]+)/messages:send$")


@dataclass(frozen=True, slots=True)
class FcmError:
    """One row of Google's FCM error table."""

    http_status: int
    status: str
    message: str
    fcm_error_code: str | None
    """``errorCode`` of the ``FcmError`` detail; ``None`` for plain platform errors."""


#: Errors a fault rule may name. The first seven are FCM's documented ``errorCode`` values;
#: firebase-admin 7.7 raises, respectively: InvalidArgumentError, UnregisteredError,
#: SenderIdMismatchError, QuotaExceededError, UnavailableError, InternalError,
#: ThirdPartyAuthError. The last two are platform errors without an FcmError detail.
FCM_ERRORS: dict[str, FcmError] = {
    "INVALID_ARGUMENT": FcmError(
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        "INVALID_ARGUMENT",
    ),
    "UNREGISTERED": FcmError(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    "SENDER_ID_MISMATCH": FcmError(
        403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"
    ),
    "QUOTA_EXCEEDED": FcmError(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
        "QUOTA_EXCEEDED",
    ),
    "UNAVAILABLE": FcmError(
        503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"
    ),
    "INTERNAL": FcmError(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": FcmError(
        401,
        "UNAUTHENTICATED",
        "Auth error from APNS or Web Push Service",
        "THIRD_PARTY_AUTH_ERROR",
    ),
    "UNAUTHENTICATED": FcmError(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
        None,
    ),
    "PERMISSION_DENIED": FcmError(
        403,
        "PERMISSION_DENIED",
        "Permission 'cloudmessaging.messages.create' denied on resource.",
        None,
    ),
}

_MISSING_CREDENTIAL = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)


def error_body(
    error: FcmError, message: str | None = None, violation: Violation | None = None
) -> dict[str, Any]:
    """Google's JSON error envelope for ``error``."""
    details: list[dict[str, Any]] = []
    if error.fcm_error_code is not None:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error.fcm_error_code})
    if violation is not None:
        details.append(
            {
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [
                    {"field": violation.field, "description": violation.description}
                ],
            }
        )
    body: dict[str, Any] = {
        "code": error.http_status,
        "message": message or error.message,
        "status": error.status,
    }
    if details:
        body["details"] = details
    return {"error": body}


# -- service accounts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Google service account as far as the fake needs to know it."""

    client_email: str
    private_key_id: str
    public_key_pem: bytes
    project_id: str
    path: Path | None = None


def write_service_account(
    path: Path,
    *,
    project_id: str,
    token_uri: str,
    client_email: str | None = None,
) -> ServiceAccount:
    """Write a service-account JSON key file (fresh RSA-2048 key) whose ``token_uri`` is a fake.

    ``firebase_admin.credentials.Certificate(path)`` loads it like one downloaded from the
    Firebase console, so the real google-auth JWT-bearer exchange runs against the fake.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = client_email or f"firebase-adminsdk-fake@{project_id}.iam.gserviceaccount.com"
    key_id = secrets.token_hex(20)
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/fake",
        "universe_domain": "googleapis.com",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2))
    path.chmod(0o600)
    return ServiceAccount(email, key_id, _public_pem(key), project_id, path)


def load_service_account(path: Path) -> ServiceAccount:
    """Read a service-account key file (e.g. one written earlier) and derive its public key."""
    info = json.loads(path.read_text())
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: private_key is not an RSA key")
    return ServiceAccount(
        info["client_email"],
        info.get("private_key_id", ""),
        _public_pem(key),
        info.get("project_id", ""),
        path,
    )


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(slots=True)
class _AccessToken:
    client_email: str
    expires_monotonic: float
    scopes: frozenset[str]


# -- the fake ----------------------------------------------------------------------------------


class FcmFake(ProtocolFake):
    """FCM HTTP v1 + OAuth2 token endpoint; see the module docstring.

    ``project_id``: the only project ``messages:send`` accepts (others get 403 PERMISSION_DENIED).
    ``token_lifetime``: ``expires_in`` of issued access tokens; an expired one gets 401.
    ``quota_retry_after``: ``Retry-After`` seconds on QUOTA_EXCEEDED when the rule sets none.
    ``plain_port``: with ``tls``, also listen in plaintext there (0: any free port; ``None``: no)
    and point :attr:`token_uri` at it.
    """

    kind = "fcm"

    def __init__(
        self,
        *,
        project_id: str = "wavecast-test",
        service_accounts: Iterable[ServiceAccount] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        recording: RecordingMode = "full",
        token_lifetime: int = 3600,
        quota_retry_after: int = 1,
        plain_port: int | None = 0,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, recording=recording, plain_port=plain_port)
        self.project_id = project_id
        self.token_lifetime = token_lifetime
        self.quota_retry_after = quota_retry_after
        self._accounts: dict[str, ServiceAccount] = {}
        self._public_keys: dict[str, Any] = {}
        self._tokens: dict[str, _AccessToken] = {}
        self._message_counter = 0
        for account in service_accounts:
            self.trust(account)

    def error_names(self) -> Iterable[str]:
        return FCM_ERRORS

    # -- configuration ---------------------------------------------------------------------

    def trust(self, account: ServiceAccount) -> None:
        """Accept JWT-bearer grants signed by ``account``'s key."""
        self._accounts[account.client_email] = account
        self._public_keys[account.client_email] = serialization.load_pem_public_key(
            account.public_key_pem
        )

    def create_service_account(self, path: Path, client_email: str | None = None) -> ServiceAccount:
        """Write a key file whose ``token_uri`` is this (started) fake, and trust it."""
        account = write_service_account(
            path, project_id=self.project_id, token_uri=self.token_uri, client_email=client_email
        )
        self.trust(account)
        return account

    def revoke_access_tokens(self) -> None:
        """Forget every issued access token: the next send gets 401 and must re-exchange."""
        self._tokens = {}

    @property
    def token_uri(self) -> str:
        """Where google-auth exchanges the JWT; plaintext when the fake has a plain listener.

        google-auth posts with ``requests``, which ignores ``SSL_CERT_FILE`` (it would need
        ``REQUESTS_CA_BUNDLE``); over plaintext only httpx has to trust the fake CA.
        """
        return f"{self.plain_url or self.url}/token"

    @property
    def send_url(self) -> str:
        """What firebase-admin's ``_MessagingService._fcm_url`` must be set to."""
        return f"{self.url}/v1/projects/{self.project_id}/messages:send"

    def describe(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "token_uri": self.token_uri,
            "send_url": self.send_url,
            "service_accounts": sorted(self._accounts),
            "ca_file": str(self.tls.ca_file) if self.tls else None,
        }

    # -- request handling ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        if path == "/token":
            return self._token(request)
        match = _SEND_PATH.match(path)
        if match is None:
            record = self.new_record(request, "other", None)
            return self._error(
                record,
                FcmError(404, "NOT_FOUND", "Not found", None),
                f"No route for {request.method} {path}",
            )
        return self._send(request, match.group(1))

    def _send(self, request: Request, project: str) -> Reply:
        # Token before the body is parsed only when it cannot be parsed: records and fault rules
        # are keyed by the device token, which lives inside the JSON.
        body: Any = None
        parse_error = False
        try:
            body = json.loads(request.body)
        except ValueError:
            parse_error = True
        message = body.get("message") if isinstance(body, dict) else None
        # firebase-admin 7.7 deprecates Message.token in favour of Message.fid: key by either.
        token = message.get("token") or message.get("fid") if isinstance(message, dict) else None
        record = self.new_record(request, "send", token if isinstance(token, str) else None)

        if request.method != "POST":
            return self._error(
                record, FcmError(405, "METHOD_NOT_ALLOWED", "Method not allowed", None)
            )
        # Authentication happens in Google's front end, before any FCM logic or fault.
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self._error(
                record,
                FCM_ERRORS["UNAUTHENTICATED"],
                _MISSING_CREDENTIAL,
                extra_headers=[("www-authenticate", 'Bearer realm="fake"')],
            )
        grant = self._tokens.get(auth[7:].strip())
        if grant is None or grant.expires_monotonic <= time.monotonic():
            return self._error(
                record,
                FCM_ERRORS["UNAUTHENTICATED"],
                extra_headers=[("www-authenticate", 'Bearer realm="fake", error="invalid_token"')],
            )
        if project != self.project_id or not grant.scopes & MESSAGING_SCOPES:
            what = (
                "insufficient authentication scopes"
                if project == self.project_id
                else (f"permission denied on project {project}")
            )
            return self._error(record, FCM_ERRORS["PERMISSION_DENIED"], f"Request had {what}.")

        rule = self.rulebook.pick(record.token)
        if rule is not None:
            reply = self._fault(record, rule)
            if reply is not None:
                return reply
            delay = rule.latency
        else:
            delay = 0.0

        if parse_error:
            return self._invalid(record, Violation("", "Invalid JSON payload received."), delay)
        _, violation = validate_send_request(body)
        if violation is None and isinstance(message, dict):
            violation = check_size(len(request.body), message)
        if violation is not None:
            return self._invalid(record, violation, delay)

        if isinstance(body, dict) and (body.get("validate_only") or body.get("validateOnly")):
            # Google answers dry runs with this fixed name.
            name = f"projects/{self.project_id}/messages/fake_message_id"
        else:
            self._message_counter += 1
            name = f"projects/{self.project_id}/messages/0:{self._message_counter:016x}"
        record.message_id = name
        reply = json_reply(200, {"name": name})
        reply.delay = delay
        return self.finish(record, reply)

    def _fault(self, record: Record, rule: FaultRule) -> Reply | None:
        """The reply a fired rule dictates; ``None`` for a latency-only rule."""
        record.rule_id = rule.id
        if rule.action != "answer":
            return self.finish(record, Reply(action=rule.action, delay=rule.latency))
        if rule.error is None:
            return None
        error = FCM_ERRORS[rule.error]
        headers: list[tuple[str, str]] = []
        retry_after = rule.retry_after
        if retry_after is None and rule.error == "QUOTA_EXCEEDED":
            retry_after = self.quota_retry_after
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        return self._error(record, error, extra_headers=headers, delay=rule.latency)

    def _invalid(self, record: Record, violation: Violation, delay: float) -> Reply:
        base = FCM_ERRORS["INVALID_ARGUMENT"]
        # Malformed JSON is a platform error without an FcmError detail, as with Google.
        error = base if violation.field else FcmError(400, "INVALID_ARGUMENT", "", None)
        message = f"Request contains an invalid argument: {violation.description}"
        return self._error(record, error, message, violation=violation, delay=delay)

    def _error(
        self,
        record: Record,
        error: FcmError,
        message: str | None = None,
        *,
        violation: Violation | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        delay: float = 0.0,
    ) -> Reply:
        record.reason = error.fcm_error_code or error.status
        reply = json_reply(error.http_status, error_body(error, message, violation), extra_headers)
        reply.delay = delay
        return self.finish(record, reply)

    # -- OAuth2 ----------------------------------------------------------------------------

    def _token(self, request: Request) -> Reply:
        record = self.new_record(request, "token", None)
        if request.method != "POST":
            return self._grant_error(record, 405, "invalid_request", "POST required")
        form = parse_qs(request.body.decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant_type != JWT_BEARER_GRANT:
            return self._grant_error(
                record, 400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}"
            )
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._grant_error(record, 400, "invalid_grant", "Invalid JWT.")
        email = claims.get("iss")
        record.token = email if isinstance(email, str) else None
        account = self._accounts.get(email) if isinstance(email, str) else None
        if account is None:
            return self._grant_error(
                record, 400, "invalid_grant", "Invalid grant: account not found"
            )
        if header.get("kid") not in (None, account.private_key_id):
            return self._grant_error(record, 400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                self._public_keys[account.client_email],
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_URI, self.token_uri],
                options={"require": ["iss", "aud", "iat", "exp"]},
                leeway=30,
            )
        except jwt.InvalidSignatureError:
            return self._grant_error(record, 400, "invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError as exc:
            return self._grant_error(
                record,
                400,
                "invalid_grant",
                f"Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                f"reasonable timeframe. Check your iat and exp values in the JWT claim. ({exc})",
            )
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return self._grant_error(
                record,
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes)",
            )
        access_token = "ya29.fake." + secrets.token_urlsafe(32)
        self._tokens[access_token] = _AccessToken(
            account.client_email,
            time.monotonic() + self.token_lifetime,
            frozenset(str(claims.get("scope", "")).split()),
        )
        return self.finish(
            record,
            json_reply(
                200,
                {
                    "access_token": access_token,
                    "expires_in": self.token_lifetime,
                    "token_type": "Bearer",
                },
            ),
        )

    def _grant_error(self, record: Record, status: int, error: str, description: str) -> Reply:
        record.reason = error
        return self.finish(
            record, json_reply(status, {"error": error, "error_description": description})
        )


# -- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from wavecast_tools.fakes.cli import add_common_arguments

    parser = argparse.ArgumentParser(
        prog="python -m wavecast_tools.fakes.fcm",
        description="Fake FCM HTTP v1 endpoint with a Google OAuth2 token endpoint.",
    )
    add_common_arguments(parser, default_tls=False)
    parser.add_argument("--project-id", default="wavecast-test")
    parser.add_argument(
        "--service-account",
        type=Path,
        action="append",
        default=[],
        help="service-account JSON to trust; written (with a new key and this fake's token_uri) "
        "if the file does not exist. Repeatable.",
    )
    parser.add_argument("--token-lifetime", type=int, default=3600)
    parser.add_argument("--quota-retry-after", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from wavecast_tools.fakes.cli import run_fake, tls_from_args

    args = build_parser().parse_args(argv)
    existing = [load_service_account(p) for p in args.service_account if p.exists()]
    missing = [p for p in args.service_account if not p.exists()]
    fake = FcmFake(
        project_id=args.project_id,
        service_accounts=existing,
        host=args.host,
        port=args.port,
        tls=tls_from_args(args),
        recording=args.recording,
        token_lifetime=args.token_lifetime,
        quota_retry_after=args.quota_retry_after,
        plain_port=0 if args.plain_port is None else args.plain_port,
    )

    def after_start() -> dict[str, Any]:
        written = [str(fake.create_service_account(p).path) for p in missing]
        return {**fake.describe(), "written_service_accounts": written}

    return run_fake(fake, args, after_start)


if __name__ == "__main__":
    raise SystemExit(main())
