"""Prometheus metrics shared by the API and the workers."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "wavecast_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "wavecast_http_request_seconds", "HTTP request latency", ["method", "route"]
)
DELIVERIES = Counter(
    "wavecast_deliveries_total", "Delivery outcomes recorded by workers", ["provider", "outcome"]
)
PROVIDER_LATENCY = Histogram(
    "wavecast_provider_request_seconds", "Provider batch latency", ["provider"]
)
RATE_LIMITED = Counter(
    "wavecast_rate_limited_total", "API requests refused by the rate limit", ["bucket"]
)
RATE_LIMIT_FALLBACK = Counter(
    "wavecast_rate_limit_local_total",
    "API requests limited in-process because Redis was unreachable",
)
