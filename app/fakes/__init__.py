"""Protocol fakes of the push providers, for tests and benchmarks.

They speak the real wire protocols so the real client libraries run unmodified against them:

- :mod:`app.fakes.fcm` -- FCM HTTP v1 + Google's OAuth2 token endpoint (CLI: ``-m`` it);
- :mod:`app.fakes.apns` -- APNs over HTTP/2 + TLS with token auth (CLI: ``-m`` it);
- :mod:`app.fakes.clients` -- how to point firebase-admin and aioapns at a non-default endpoint;
- :mod:`app.fakes.bareloop` -- the bare client-library send loops a benchmark compares against.

Shared machinery: :mod:`~app.fakes.server` (HTTP/1.1 + HTTP/2 on asyncio), :mod:`~app.fakes.base`
(lifecycle, records, rules, ``/_fake/`` introspection), :mod:`~app.fakes.faults`,
:mod:`~app.fakes.records`, :mod:`~app.fakes.tls`.
"""
