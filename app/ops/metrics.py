"""The API's Prometheus metrics (the worker's are in `worker_metrics`, a registry of its own)."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "wavecast_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "wavecast_http_request_seconds", "HTTP request latency", ["method", "route"]
)
RATE_LIMITED = Counter(
    "wavecast_rate_limited_total", "API requests refused by the rate limit", ["bucket"]
)
RATE_LIMIT_FALLBACK = Counter(
    "wavecast_rate_limit_local_total",
    "API requests limited in-process because Redis was unreachable",
)
