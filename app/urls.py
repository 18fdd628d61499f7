"""Which URLs the service calls out to: plain http(s) with a host, nothing hidden in them.

One rule for every address a user gives the service to call (a webhook, a wave check's
Prometheus or HTTP source): a secret in a URL would be stored, shown and audited with what
holds it, and a fragment, control character or port 0 is never what was meant.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_problems(url: str, *, max_length: int) -> list[str]:
    """Why `url` cannot be called, as short phrases naming each problem; [] when it can."""
    if len(url) > max_length:
        return [f"at most {max_length} characters"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"not a URL: {exc}"]
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append("must be an http:// or https:// URL (scheme)")
    if not parts.hostname:
        problems.append("must name a host")
    if parts.username is not None or parts.password is not None:
        problems.append("must not carry credentials (user:password@)")
    if parts.fragment:
        problems.append("must not have a #fragment")
    if port == 0:
        problems.append("port 0 is not a port")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        problems.append("must not contain spaces or control characters")
    return problems
