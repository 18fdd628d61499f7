"""Protocol fakes of the push providers, for tests and benchmarks.

They speak the real wire protocols so the real client libraries run unmodified against them:

- :mod:`wavecast_tools.fakes.fcm` -- FCM HTTP v1 + Google's OAuth2 token endpoint (CLI: ``-m`` it);
- :mod:`wavecast_tools.fakes.apns` -- APNs over HTTP/2 + TLS with token auth (CLI: ``-m`` it);
- :mod:`wavecast_tools.fakes.clients` -- how to point firebase-admin and aioapns at a
  non-default endpoint;
- :mod:`wavecast_tools.fakes.bareloop` -- the bare client-library send loops a benchmark
  compares against.

Shared machinery: :mod:`~wavecast_tools.fakes.server` (HTTP/1.1 + HTTP/2 on asyncio),
:mod:`~wavecast_tools.fakes.base`
(lifecycle, records, rules, ``/_fake/`` introspection), :mod:`~wavecast_tools.fakes.faults`,
:mod:`~wavecast_tools.fakes.records`, :mod:`~wavecast_tools.fakes.tls`.
"""
