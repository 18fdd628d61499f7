"""Imports every table model so that `metadata` knows the whole schema (Alembic, tests)."""

from app.audit.models import AuditEvent
from app.auth.models import ApiKey
from app.db.base import metadata
from app.devices.models import Device

__all__ = ["ApiKey", "AuditEvent", "Device", "metadata"]
