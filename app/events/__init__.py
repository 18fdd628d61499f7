"""Engagement events: what became of a push (received, opened, converted), reported by the app
or the bank's backend with the push's delivery reference, and the per-wave figures built on
them."""
