"""Standard Webhooks signatures, through the `standardwebhooks` package: each delivery
carries `webhook-id` (stable across its retries, for the receiver's de-duplication),
`webhook-timestamp` (this attempt's) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}` under the secret)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook as Signer

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def message_id(audit_sequence: int) -> str:
    return f"msg_wavecast_{audit_sequence}"


def signed_headers(secret: str, msg_id: str, moment: datetime, body: bytes) -> dict[str, str]:
    signature = Signer(secret).sign(msg_id, moment, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
