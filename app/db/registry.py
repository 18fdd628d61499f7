"""Imports every table model so that `metadata` knows the whole schema (Alembic, tests)."""

from app.approval.models import CampaignApproval
from app.audiences.models import Segment
from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.campaigns.models import Campaign, CampaignWave, IdempotentRequest
from app.checks.models import WaveCheckResult
from app.db.base import metadata
from app.delivery.models import Delivery, SandboxMessage
from app.devices.models import Device
from app.events.models import EngagementEvent
from app.killswitch.models import KillSwitch
from app.notify.models import DeliveryAttempt, OutboxMessage
from app.people.models import Person
from app.webhooks.models import Webhook

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Campaign",
    "CampaignApproval",
    "CampaignWave",
    "Delivery",
    "DeliveryAttempt",
    "Device",
    "EngagementEvent",
    "IdempotentRequest",
    "KillSwitch",
    "OutboxMessage",
    "Person",
    "SandboxMessage",
    "Segment",
    "WaveCheckResult",
    "Webhook",
    "metadata",
]
