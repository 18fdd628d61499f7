"""When a device may be sent a campaign: the pure arithmetic of timing rules.

- `schedule`: local-time delivery, quiet hours, the send-by deadline, in each device's own
  IANA time zone;
- `caps`: frequency caps (``2/24h``) and the reference model of a rolling window; the atomic
  store that enforces them across campaigns and workers is ``app.control.caps``.

Nothing here reads the clock: every function takes the instant it reasons about, an aware
datetime, and answers in UTC.
"""
