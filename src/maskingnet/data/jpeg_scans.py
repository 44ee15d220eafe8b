"""How many scans a JPEG holds, counted from its markers before anything is decoded.

A progressive JPEG's decoding time is its pixel count times its number of scans: libjpeg walks every block
of the photo once per scan, even a scan of a few bytes that changes nothing. Ordinary encoders write 10
scans (libjpeg, mozjpeg's optimised scripts a few more); a 1 MB file can repeat a 14-byte scan 70,000
times and cost a 16 MP photo minutes of CPU. Counting the start-of-scan markers first bounds decoding by
the photo, not by the bytes' shape.

The walk follows the markers as libjpeg does: length-prefixed segments are skipped whole (an EXIF
thumbnail's own markers are not counted), a scan's entropy-coded data runs to the next marker that is not
byte stuffing (``FF 00``), a restart marker or fill (``FF FF``), and stray bytes between segments are
passed over to the next ``FF``, as libjpeg does with a warning. The first EOI ends it (an MPO's later
pictures are not decoded).
"""

from __future__ import annotations

import re

DEFAULT_MAX_SCANS = 100
"""Scans accepted in one JPEG: ten times what encoders write; each costs one walk over the photo."""

_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length
_NEXT_MARKER_IN_SCAN = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
_NEXT_FF = re.compile(rb"\xff+[^\x00\xff]")


def too_many_scans(data: bytes, limit: int = DEFAULT_MAX_SCANS) -> bool:
    """Whether ``data`` (a whole JPEG file) holds more than ``limit`` scans. Entropy-coded data never
    holds the bytes ``FF DA`` (an ``FF`` there is followed by ``00``), so their count bounds the scans from
    above: a file within it (any ordinary photo) costs one fast pass, and only one past it is walked
    marker by marker (its thumbnail's or its metadata's bytes do not count against it)."""
    if data.count(b"\xff\xda") <= limit:
        return False
    return count_scans(data, stop_after=limit) > limit


def count_scans(data: bytes, stop_after: int | None = None) -> int:
    """The number of start-of-scan markers libjpeg would read in ``data`` (a whole JPEG file), stopping
    early once past ``stop_after``."""
    count = 0
    pos = 2  # after SOI
    size = len(data)
    while pos + 1 < size:
        found = _NEXT_FF.match(data, pos) or _NEXT_FF.search(data, pos)
        if found is None:
            break
        marker = data[found.end() - 1]
        pos = found.end()
        if marker == _EOI:
            break
        if marker in _STANDALONE or marker == 0xD8:
            continue
        if pos + 2 > size:
            break
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == _SOS:
            count += 1
            if stop_after is not None and count > stop_after:
                break
            after = _NEXT_MARKER_IN_SCAN.search(data, pos)
            if after is None:
                break
            pos = after.start()
    return count
