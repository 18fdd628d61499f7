"""Instants the API accepts from a caller: ISO-8601 with an offset, and within what UTC holds.

`pydantic.AwareDatetime` refuses a timestamp without an offset, but not one whose offset pushes
it past the calendar: `0001-01-01T00:00:00+01:00` is the last hour of year 0 in UTC, and
`9999-12-31T23:59:59-01:00` the first of year 10000. Python cannot represent either in UTC, and
every instant is stored and compared in UTC (`app.db.types.UTCDateTime`), so such a value is a
validation error that names its field, never an overflow deep in a query. The calendar's very
first and last microseconds are refused too: PostgreSQL's driver stores them as -infinity and
infinity, which read back as no instant at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

OUT_OF_RANGE = (
    "out of range: in UTC this instant must fall after 0001-01-01T00:00:00Z "
    "and before 9999-12-31T23:59:59.999999Z"
)
FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)


def representable_in_utc(value: datetime) -> datetime:
    """`value` unchanged when it has a UTC equivalent; ValueError (a 422) when not."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    if in_utc in (FIRST, LAST):
        raise ValueError(OUT_OF_RANGE)
    return value


Instant = Annotated[AwareDatetime, AfterValidator(representable_in_utc)]
"""A caller's instant: an offset required, and representable in UTC (its first and last
microseconds excepted)."""


def earlier_by(moment: datetime, span: timedelta) -> datetime:
    """`moment - span`, or the first instant a datetime holds when that would be earlier
    (the subtraction itself would overflow)."""
    # Compared as a difference: `moment - span` overflows for a moment in year 1.
    return moment - span if moment - FIRST > span else FIRST
