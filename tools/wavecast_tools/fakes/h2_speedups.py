"""Server-side HTTP/2 cost cuts, so a fake costs less CPU than the client driving it.

Profiling the APNs fake under a bare aioapns loop (1000 concurrent streams per connection) showed
three costs in ``h2``/``hpack`` that have nothing to do with the protocol semantics we fake:

1. ``H2Connection.open_inbound_streams`` scans *every* stream on each new stream:
   :class:`~app.delivery.providers.h2_lean.FastH2Connection`, shared with the APNs client.
2. h2 sends ``authorization`` as a never-indexed literal, so the same ~200-byte provider JWT
   arrives Huffman-coded on every request, and hpack's pure-Python Huffman decoder (two nibble
   steps per byte) spent ~200 us on it each time. :func:`install_huffman_cache` replaces it by a
   byte-at-a-time state table built from hpack's own nibble table, memoised (bounded LRU). The
   output is a pure function of the input bytes, identical to hpack's, so this is safe
   process-wide; invalid input still raises ``HPACKDecodingError``.
3. Huffman-*encoding* response headers (fresh UUIDs each time) buys a few bytes on loopback for
   noticeable CPU: :class:`~app.delivery.providers.h2_lean.PlainEncoder` sends literals raw.
"""

from __future__ import annotations

import functools

import hpack
import hpack.hpack
import hpack.huffman_table
from hpack.exceptions import HPACKDecodingError

from app.delivery.providers.h2_lean import FastH2Connection, PlainEncoder

__all__ = ["FastH2Connection", "PlainEncoder", "install_huffman_cache", "plain_headers"]


def plain_headers(
    headers: list[tuple[str, str]],
) -> list[tuple[str, str] | hpack.NeverIndexedHeaderTuple]:
    """Mark regular response headers not to be indexed (pseudo-headers stay static-indexed).

    Our response values are mostly fresh UUIDs: adding each to the HPACK dynamic table costs a
    table search, an insert and an eviction per header and never pays back.
    """
    return [
        (name, value) if name[0] == ":" else hpack.NeverIndexedHeaderTuple(name, value)
        for name, value in headers
    ]


_installed = False


def install_huffman_cache(maxsize: int = 2048) -> None:
    """Swap hpack's Huffman decoder for the faster, memoised one (idempotent)."""
    global _installed
    if _installed:
        return
    if getattr(hpack.hpack, "decode_huffman", None) is None:
        return  # a future hpack moved it: stay on the slow path rather than fail
    table = _byte_table()
    if table is None:
        return

    @functools.lru_cache(maxsize=maxsize)
    def decode_huffman(data: bytes) -> bytes:
        if not data:
            return b""
        state = 0
        complete = True
        out = []
        for byte in data:
            entry = table[(state << 8) | byte]
            if entry is None:
                raise HPACKDecodingError("Invalid Huffman string")
            state, emitted, complete = entry
            if emitted:
                out.append(emitted)
        if not complete:
            raise HPACKDecodingError("Incomplete Huffman string")
        return b"".join(out)

    setattr(hpack.hpack, "decode_huffman", decode_huffman)  # noqa: B010
    _installed = True


_Entry = tuple[int, bytes, bool] | None


def _byte_table() -> list[_Entry] | None:
    """Compose hpack's 16-way nibble automaton into a 256-way byte automaton.

    ``table[state << 8 | byte]`` is ``(next_state, emitted_bytes, complete)``, or ``None`` where
    hpack's automaton fails.
    """
    nibbles = getattr(hpack.huffman_table, "HUFFMAN_TABLE", None)
    complete_flag = getattr(hpack.huffman_table, "HUFFMAN_COMPLETE", None)
    emit_flag = getattr(hpack.huffman_table, "HUFFMAN_EMIT_SYMBOL", None)
    fail_flag = getattr(hpack.huffman_table, "HUFFMAN_FAIL", None)
    if nibbles is None or None in (complete_flag, emit_flag, fail_flag) or len(nibbles) != 4096:
        return None
    table: list[_Entry] = []
    for state in range(256):
        for byte in range(256):
            s1, f1, o1 = nibbles[state * 16 + (byte >> 4)]
            if f1 & fail_flag:
                table.append(None)
                continue
            s2, f2, o2 = nibbles[s1 * 16 + (byte & 0x0F)]
            if f2 & fail_flag:
                table.append(None)
                continue
            emitted = (bytes((o1,)) if f1 & emit_flag else b"") + (
                bytes((o2,)) if f2 & emit_flag else b""
            )
            table.append((s2, emitted, bool(f2 & complete_flag)))
    return table
    _installed = True
