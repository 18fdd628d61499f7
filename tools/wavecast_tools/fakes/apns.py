"""A fake Apple Push Notification service (HTTP/2 over TLS, token-based authentication).

``POST /3/device/{token}`` is checked as APNs checks it: method, then the provider token
(``authorization: bearer <ES256 JWT>`` whose ``kid`` names a key registered with the fake and
whose ``iss`` is that key's team; older than ``token_max_age`` -> 403 ExpiredProviderToken), then
fault rules, then headers and payload (:mod:`wavecast_tools.fakes.apns_validation`). Success
is 200 with an
empty body and ``apns-id`` (echoed, or minted); errors carry ``{"reason": ...}`` (plus
``timestamp`` in ms for 410).

One instance is one APNs environment: run a ``sandbox`` and a ``production`` fake side by side to
check that a device token only ever reaches its own. Tokens minted by
:func:`~wavecast_tools.fakes.apns_validation.make_device_token` for the other environment get 400
BadDeviceToken, as on Apple's servers.

aioapns facts this fake was built against (aioapns 4.0, read from its source):

- it sets no ALPN protocol, so the server must speak HTTP/2 without negotiation (we sniff the
  connection preface);
- it matches responses to requests by the ``apns-id`` response header, and parses every DATA
  frame of an error as a whole JSON document -- so replies always echo ``apns-id`` and send an
  error body in one frame;
- it never returns HTTP/2 flow-control window for the response bodies it reads. Error bodies
  use up the connection's 65,535-byte receive window for good, so after ~2,340
  ``{"reason": "BadDeviceToken"}`` answers (~1,210 410s with their timestamp) on one connection
  the next body no longer fits: this fake, honouring flow control as Apple must, sends the part
  that fits, aioapns ``json.loads`` the fragment, the exception kills the connection, and every
  request pending on it is silently sent again on a new connection (duplicates included).
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wavecast_tools.fakes.apns_validation import (
    Environment,
    Refusal,
    make_device_token,
    token_environment,
    validate_notification,
)
from wavecast_tools.fakes.base import ProtocolFake
from wavecast_tools.fakes.faults import FaultRule
from wavecast_tools.fakes.filelock import exclusive
from wavecast_tools.fakes.records import Record, RecordingMode
from wavecast_tools.fakes.server import Reply, Request
from wavecast_tools.fakes.tls import TlsFiles

__all__ = [
    "APNS_ERRORS",
    "ApnsFake",
    "ApnsKey",
    "ensure_apns_key",
    "generate_apns_key",
    "load_apns_key",
    "make_device_token",
    "token_environment",
]

_DEVICE_PATH = "/3/device/"

#: Apple's ``reason`` strings and the HTTP status each comes with. A fault rule's ``error`` is one
#: of these names.
APNS_ERRORS: dict[str, int] = {
    "BadCollapseId": 400,
    "BadDeviceToken": 400,
    "BadExpirationDate": 400,
    "BadMessageId": 400,
    "BadPayload": 400,
    "BadPriority": 400,
    "BadTopic": 400,
    "DeviceTokenNotForTopic": 400,
    "DuplicateHeaders": 400,
    "IdleTimeout": 400,
    "InvalidPushType": 400,
    "MissingDeviceToken": 400,
    "MissingTopic": 400,
    "PayloadEmpty": 400,
    "TopicDisallowed": 400,
    "BadCertificate": 403,
    "BadCertificateEnvironment": 403,
    "ExpiredProviderToken": 403,
    "Forbidden": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "UnrelatedKeyIdInToken": 403,
    "BadEnvironmentKeyIdInToken": 403,
    "BadPath": 404,
    "MethodNotAllowed": 405,
    "ExpiredToken": 410,
    "Unregistered": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}

_ID_ALPHABET = string.ascii_uppercase + string.digits


# -- provider keys -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApnsKey:
    """A token-auth signing key as Apple hands it out: a P-256 ``.p8``, a key id, a team id."""

    key_id: str
    team_id: str
    private_key_pem: str
    """PKCS#8 PEM text -- what aioapns 4.0 wants as ``APNs(key=...)`` (the content, not a path)."""
    public_key_pem: bytes
    path: Path | None = None


def generate_apns_key(
    directory: Path | None = None, *, key_id: str | None = None, team_id: str | None = None
) -> ApnsKey:
    """A new signing key; with ``directory``, also written as ``AuthKey_<KEYID>.p8`` there."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = key_id or _random_id()
    team_id = team_id or _random_id()
    path = None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"AuthKey_{key_id}.p8"
        path.write_text(pem)
        path.chmod(0o600)
    return ApnsKey(key_id, team_id, pem, _public_pem(key), path)


def ensure_apns_key(
    path: Path, *, key_id: str | None = None, team_id: str | None = None
) -> ApnsKey:
    """Load the key at ``path`` or create it there.

    Key and team ids live next to the key in ``<path>.json``, so a restarted fake (and the client
    configured from the same files) keeps the same identity. Explicit ids override the file.
    """
    sidecar = path.with_name(path.name + ".json")
    with exclusive(path.with_name(path.name + ".lock")):
        if path.exists():
            ids = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            key_id, team_id = key_id or ids.get("key_id"), team_id or ids.get("team_id")
            if not (key_id and team_id):
                raise ValueError(
                    f"{path}: key and team ids unknown; pass them or add {sidecar.name}"
                )
            return load_apns_key(path, key_id=key_id, team_id=team_id)
        generated = generate_apns_key(key_id=key_id, team_id=team_id)
        ids_json = json.dumps({"key_id": generated.key_id, "team_id": generated.team_id})
        sidecar.write_text(ids_json)
        path.write_text(generated.private_key_pem)
        path.chmod(0o600)
    return load_apns_key(path, key_id=generated.key_id, team_id=generated.team_id)


def load_apns_key(path: Path, *, key_id: str, team_id: str) -> ApnsKey:
    pem = path.read_text()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC (ES256) key")
    return ApnsKey(key_id, team_id, pem, _public_pem(key), path)


def _public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _random_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


@dataclass(frozen=True, slots=True)
class _Verdict:
    refusal: Refusal | None
    issued_at: float


# -- the fake ----------------------------------------------------------------------------------


class ApnsFake(ProtocolFake):
    """One APNs environment; see the module docstring.

    ``topics``: bundle ids the configured keys may push to (others -> 400 BadTopic).
    ``strict_environment``: refuse tokens marked for the other environment (BadDeviceToken).
    ``token_max_age``: provider tokens older than this many seconds -> 403 ExpiredProviderToken.
    ``plain_port``: also listen in plaintext (h2c/HTTP/1.1) there, e.g. for introspection.
    """

    kind = "apns"

    def __init__(
        self,
        *,
        tls: TlsFiles,
        environment: Environment = "sandbox",
        topics: Iterable[str] = ("com.example.wavecast",),
        keys: Iterable[ApnsKey] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        recording: RecordingMode = "full",
        strict_environment: bool = True,
        token_max_age: float = 3600.0,
        h2_max_concurrent_streams: int = 1000,
        plain_port: int | None = None,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            tls=tls,
            recording=recording,
            h2_max_concurrent_streams=h2_max_concurrent_streams,
            plain_port=plain_port,
        )
        self.environment: Environment = environment
        self.topics = frozenset(topics)
        self.strict_environment = strict_environment
        self.token_max_age = token_max_age
        self._keys: dict[str, tuple[ApnsKey, Any]] = {}
        # Verifying an ES256 signature costs ~100 us; aioapns reuses one provider token for 30
        # minutes, so verdicts are cached by the exact header value.
        self._verdicts: dict[str, _Verdict] = {}
        for key in keys:
            self.trust(key)

    def error_names(self) -> Iterable[str]:
        return APNS_ERRORS

    def trust(self, key: ApnsKey) -> None:
        """Accept provider tokens signed by ``key`` (for its team)."""
        self._keys[key.key_id] = (key, serialization.load_pem_public_key(key.public_key_pem))
        self._verdicts = {}

    def device_token(self, seed: int | str) -> str:
        """A device token belonging to this fake's environment."""
        return make_device_token(self.environment, seed)

    def describe(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "topics": sorted(self.topics),
            "key_ids": sorted(self._keys),
            "team_ids": sorted({key.team_id for key, _ in self._keys.values()}),
            "ca_file": str(self.tls.ca_file) if self.tls else None,
        }

    # -- request handling ------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4())
        if not path.startswith(_DEVICE_PATH):
            record = self.new_record(request, "other", None)
            return self._refuse(record, apns_id, Refusal(404, "BadPath"))
        token = path[len(_DEVICE_PATH) :]
        record = self.new_record(request, "send", token)
        if request.method != "POST":
            return self._refuse(record, apns_id, Refusal(405, "MethodNotAllowed"))

        refusal = self._authenticate(request.headers.get("authorization"))
        if refusal is not None:
            return self._refuse(record, apns_id, refusal)

        delay = 0.0
        rule = self.rulebook.pick(token)
        if rule is not None:
            reply = self._fault(record, apns_id, rule)
            if reply is not None:
                return reply
            delay = rule.latency

        refusal = validate_notification(
            token=token,
            headers=request.headers,
            body=request.body,
            topics=self.topics,
            environment=self.environment,
            strict_environment=self.strict_environment,
            duplicate_header=request.duplicate_header,
        )
        if refusal is not None:
            return self._refuse(record, apns_id, refusal, delay=delay)

        headers = [("apns-id", apns_id)]
        if self.environment == "sandbox":
            headers.append(("apns-unique-id", str(uuid.uuid4())))
        record.message_id = apns_id
        return self.finish(record, Reply(200, headers, delay=delay))

    def _authenticate(self, authorization: str | None) -> Refusal | None:
        if not authorization:
            return Refusal(403, "MissingProviderToken")
        verdict = self._verdicts.get(authorization)
        if verdict is None:
            verdict = self._verify(authorization)
            if len(self._verdicts) >= 10_000:
                self._verdicts = {}
            self._verdicts[authorization] = verdict
        if verdict.refusal is not None:
            return verdict.refusal
        if time.time() - verdict.issued_at > self.token_max_age:
            return Refusal(403, "ExpiredProviderToken")
        return None

    def _verify(self, authorization: str) -> _Verdict:
        invalid = _Verdict(Refusal(403, "InvalidProviderToken"), 0.0)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return invalid
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return invalid
        entry = self._keys.get(str(header.get("kid")))
        if header.get("alg") != "ES256" or entry is None:
            return invalid
        key, public_key = entry
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return invalid
        issued_at = claims.get("iat")
        if claims.get("iss") != key.team_id or not isinstance(issued_at, int | float):
            return invalid
        if issued_at > time.time() + 60:
            return invalid
        return _Verdict(None, float(issued_at))

    def _fault(self, record: Record, apns_id: str, rule: FaultRule) -> Reply | None:
        record.rule_id = rule.id
        if rule.action != "answer":
            return self.finish(record, Reply(action=rule.action, delay=rule.latency))
        if rule.error is None:
            return None
        extra = [("retry-after", str(rule.retry_after))] if rule.retry_after is not None else []
        return self._refuse(
            record,
            apns_id,
            Refusal(APNS_ERRORS[rule.error], rule.error),
            delay=rule.latency,
            extra_headers=extra,
            invalid_at_ms=rule.invalid_at_ms,
        )

    def _refuse(
        self,
        record: Record,
        apns_id: str,
        refusal: Refusal,
        *,
        delay: float = 0.0,
        extra_headers: Sequence[tuple[str, str]] = (),
        invalid_at_ms: int | None = None,
    ) -> Reply:
        record.reason = refusal.reason
        body: dict[str, Any] = {"reason": refusal.reason}
        if refusal.status == 410:
            body["timestamp"] = (
                invalid_at_ms if invalid_at_ms is not None else int(time.time() * 1000)
            )
        headers = [("apns-id", apns_id), ("content-type", "application/json"), *extra_headers]
        reply = Reply(refusal.status, headers, json.dumps(body).encode(), delay=delay)
        return self.finish(record, reply)


# -- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from wavecast_tools.fakes.cli import add_common_arguments

    parser = argparse.ArgumentParser(
        prog="python -m wavecast_tools.fakes.apns",
        description="Fake APNs endpoint (HTTP/2 over TLS, token authentication).",
    )
    add_common_arguments(parser, default_tls=True)
    parser.add_argument("--environment", choices=("sandbox", "production"), default="sandbox")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        help="bundle id a provider may push to (repeatable; default com.example.wavecast)",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        help="provider signing key (.p8) to trust; created there (with its ids in <file>.json) "
        "if missing. Default: <cert-dir>/../keys/AuthKey.p8",
    )
    parser.add_argument("--key-id", help="key id of --key-file (generated if omitted)")
    parser.add_argument("--team-id", help="team id of --key-file (generated if omitted)")
    parser.add_argument(
        "--lenient-environment",
        action="store_true",
        help="accept tokens minted for the other environment",
    )
    parser.add_argument("--token-max-age", type=float, default=3600.0)
    parser.add_argument("--max-concurrent-streams", type=int, default=1000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from wavecast_tools.fakes.cli import run_fake, tls_from_args

    args = build_parser().parse_args(argv)
    key_file: Path = args.key_file or args.cert_dir.parent / "keys" / "AuthKey.p8"
    key = ensure_apns_key(key_file, key_id=args.key_id, team_id=args.team_id)
    tls = tls_from_args(args)
    if tls is None:
        raise SystemExit("APNs is TLS-only; --no-tls is not supported")
    fake = ApnsFake(
        tls=tls,
        environment=args.environment,
        topics=args.topic or ["com.example.wavecast"],
        keys=[key],
        host=args.host,
        port=args.port,
        recording=args.recording,
        strict_environment=not args.lenient_environment,
        token_max_age=args.token_max_age,
        h2_max_concurrent_streams=args.max_concurrent_streams,
        plain_port=args.plain_port,
    )

    def after_start() -> dict[str, Any]:
        return {
            **fake.describe(),
            "key_file": str(key.path),
            "key_id": key.key_id,
            "team_id": key.team_id,
        }

    return run_fake(fake, args, after_start)


if __name__ == "__main__":
    raise SystemExit(main())
