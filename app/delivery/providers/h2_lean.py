"""HTTP/2 cost cuts shared by the APNs client and the protocol fakes.

Both sides carry thousands of requests a second on a few connections, where two costs of the
`h2`/`hpack` libraries grow with the load and buy nothing:

1. `H2Connection.open_outbound_streams` / `open_inbound_streams` scan *every* stream the
   connection tracks each time a stream opens (the scan also forgets closed ones), so with
   1,000 streams in flight a request costs ~1,000 iterations: ~30 % of an APNs worker's CPU.
   `FastH2Connection` answers with the size of the stream table while that is below the
   limit: an upper bound of the open count, so the limit is still enforced exactly, and it
   falls back to the scan (which forgets closed streams) only once the table reaches the
   limit. Amortised O(1), and the table never outgrows the limit.
2. hpack's Huffman coder is pure Python and costs more per header than the bytes it saves
   (RFC 7541 lets an encoder send any literal raw): `PlainEncoder` never Huffman-codes.
"""

from __future__ import annotations

from typing import Any

import h2.connection
import hpack


class FastH2Connection(h2.connection.H2Connection):
    """`H2Connection` with amortised O(1) open-stream counts (see the module docstring)."""

    @property
    def open_outbound_streams(self) -> int:
        return self._bounded_open(
            int(self.config.client_side), self.remote_settings.max_concurrent_streams
        )

    @property
    def open_inbound_streams(self) -> int:
        return self._bounded_open(
            int(not self.config.client_side), self.local_settings.max_concurrent_streams
        )

    def _bounded_open(self, remainder: int, limit: int) -> int:
        tracked = len(self.streams)
        if tracked < limit:
            return tracked
        return self._open_streams(remainder)


class PlainEncoder(hpack.Encoder):
    """An HPACK encoder that never Huffman-codes (cheaper on CPU, larger on the wire)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)
