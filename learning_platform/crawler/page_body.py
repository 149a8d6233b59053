"""A response body read within a byte budget, however it is encoded, and turned into text.

An HTTP client's own decoding of `Content-Encoding` is not bounded that way: httpx decoded a
whole network chunk at a time and stacked as many encodings as the server named, so a few
kilobytes of `gzip, gzip` inflated to gigabytes before any size check ran. The crawler reads the
raw bytes (aiohttp's `auto_decompress=False`) and decodes them here with zlib's `max_length`, a
bounded piece at a time; both the raw and the decoded size count against the cap, and one
encoding at most is read.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import AsyncIterable, Iterator, Sequence

from learning_platform.crawler.errors import PageUnavailableError

# What the crawler asks for; anything else a server sends anyway is refused.
ACCEPT_ENCODING = "gzip, deflate"
# Largest piece one decompress call may produce.
_PIECE_BYTES = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS

# Encodings of the WHATWG Encoding Standard that Python has. Any other declared charset
# (unknown, or a bytes-to-bytes codec such as base64, or punycode whose decoder is quadratic)
# is read as UTF-8, as browsers fall back to a default.
_WEB_CODECS = frozenset(
    codecs.lookup(label).name
    for label in (
        "utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "latin-1", "cp1252", "cp1250",
        "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "cp874", "cp866",
        "iso-8859-2", "iso-8859-3", "iso-8859-4", "iso-8859-5", "iso-8859-6", "iso-8859-7",
        "iso-8859-8", "iso-8859-10", "iso-8859-13", "iso-8859-14", "iso-8859-15",
        "iso-8859-16", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "gbk", "gb18030",
        "big5", "euc-jp", "iso-2022-jp", "shift_jis", "euc-kr",
    )
)  # fmt: skip


class _ZlibDecoder:
    """gzip (several members allowed, as browsers do) or deflate, a bounded piece at a time."""

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits  # None: deflate, zlib-wrapped or raw, decided by the first bytes
        self._inflate: zlib._Decompress | None = None

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._inflate is None or self._inflate.eof:
                self._inflate = zlib.decompressobj(self._wbits_for(data))
            piece = self._inflate.decompress(data, _PIECE_BYTES)
            if piece:
                yield piece
            del piece  # not alive beside the next one
            data = self._inflate.unused_data if self._inflate.eof else self._inflate.unconsumed_tail

    def flush(self) -> bytes:
        return self._inflate.flush() if self._inflate is not None else b""

    def _wbits_for(self, data: bytes) -> int:
        if self._wbits is not None:
            return self._wbits
        # RFC 1950 header: compression method 8 and a check value divisible by 31.
        wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
        return zlib.MAX_WBITS if wrapped else _RAW_DEFLATE_WBITS


class _Identity:
    def pieces(self, data: bytes) -> Iterator[bytes]:
        yield data

    def flush(self) -> bytes:
        return b""


_Decoder = _ZlibDecoder | _Identity


def content_decoder(encodings: Sequence[str]) -> _Decoder:
    """The decoder for a response's `Content-Encoding` values; refuses stacked or unknown ones."""
    named = [e.strip().lower() for e in encodings if e.strip().lower() not in ("", "identity")]
    if len(named) > 1:
        raise PageUnavailableError(
            f"the page is compressed more than once ({', '.join(named)[:100]}); "
            "only a single gzip or deflate encoding is read"
        )
    if not named:
        return _Identity()
    if named[0] in ("gzip", "x-gzip"):
        return _ZlibDecoder(_GZIP_WBITS)
    if named[0] == "deflate":
        return _ZlibDecoder(None)
    raise PageUnavailableError(
        f"the page is encoded as {named[0][:40]!r}; only gzip and deflate are read"
    )


async def read_capped(
    raw: AsyncIterable[bytes], encodings: Sequence[str], limit: int, status: int
) -> bytearray:
    """The decoded body of at most `limit` bytes (raw and decoded alike) or PageUnavailableError.
    Memory held: the body so far plus one network chunk and one decoded piece. One buffer, not
    a list of the pieces: a body trickling in a byte per read would cost ~40 bytes per byte."""
    decoder = content_decoder(encodings)
    too_big = PageUnavailableError(f"the page is larger than {limit:,} bytes", status)
    received = 0
    body = bytearray()
    try:
        async for chunk in raw:
            received += len(chunk)
            if received > limit:
                raise too_big
            for piece in decoder.pieces(chunk):
                if len(body) + len(piece) > limit:
                    raise too_big
                body += piece
                del piece  # not alive while the decoder makes the next one
        tail = decoder.flush()
    except zlib.error as exc:
        raise PageUnavailableError(
            f"the page's compressed body is corrupt ({exc})", status
        ) from exc
    if len(body) + len(tail) > limit:
        raise too_big
    body += tail
    return body


def body_text(body: bytes | bytearray, charset: str | None) -> str:
    """`body` as text in its declared charset when that is a web encoding, else UTF-8;
    undecodable bytes become U+FFFD."""
    return body.decode(_web_codec(charset), errors="replace")


def _web_codec(charset: str | None) -> str:
    if charset:
        try:
            name = codecs.lookup(charset).name
        except (LookupError, ValueError):
            return "utf-8"
        if name in _WEB_CODECS:
            return name
    return "utf-8"
