"""Stream an image to disk band by band: PNG (zlib level of your choice) or uncompressed TIFF.

srlab-upscale never holds the whole output: the tiler hands over finished row bands and a
writer appends them to the file, in a background thread so encoding overlaps the net.

- PNG: 8 or 16 bits, gray / gray+alpha / RGB / RGBA. Each row is "Sub"-filtered (each byte
  minus the one a pixel to the left: one vectorised subtraction, and photos compress almost
  as well as with Pillow's adaptive filters) and deflated at `level`. Level 1 is the default
  (OpenCV's too): on a 8000x6000 photo Pillow's level 6 spent 36 s in zlib on this project's
  2-core box, level 1 3.5 s, for 44 vs 62 MB. Level 0 stores the bytes unfiltered, as fast as
  the disk but as large as raw pixels. Like pigz, pieces of ~4 MB are deflated independently
  in a thread pool (zlib releases the GIL) and joined into one zlib stream: each piece ends
  on a byte boundary (Z_SYNC_FLUSH) and a deflate stream may stop referring back at any
  block, so the pieces concatenate; the zlib header and the Adler-32 of all the data wrap them.
- TIFF: baseline, uncompressed, one strip, little-endian; the fastest format that every
  image program opens and that keeps 16 bits and alpha (.npy would be faster to write by
  nothing but is not an image file). Classic TIFF stops at 4 GiB.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from srlab.errors import SrlabError

FORMATS = {"png": ".png", "tiff": ".tif"}
SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff"}


def _deflate_piece(data: bytes, level: int) -> bytes:
    """Raw deflate of one piece, ended on a byte boundary but not final (it is followed by more)."""
    z = zlib.compressobj(level, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)


class PngStream:
    PIECE = 4 << 20  # bytes of filtered rows per independently deflated piece

    def __init__(self, path: Path, width: int, height: int, channels: int, bits: int, level: int = 1,
                 workers: int | None = None):
        if not 0 <= level <= 9:
            raise SrlabError(f"png_compression={level} must be 0 (none, fastest) ... 9 (smallest)")
        self.bits, self.level, self.bpp = bits, level, channels * bits // 8
        self.adler, self.pending = 1, deque()
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.pool = ThreadPoolExecutor(self.workers)
        self.file = open(path, "wb")
        header = struct.pack(">IIBBBBB", width, height, bits, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
        self.file.write(b"\x89PNG\r\n\x1a\n" + self._chunk(b"IHDR", header))
        self._idat(b"\x78\x01")  # zlib header: deflate, 32 KiB window, no dictionary

    @staticmethod
    def _chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    def _idat(self, data: bytes) -> None:
        if data:
            self.file.write(self._chunk(b"IDAT", data))

    def _drain(self, keep: int) -> None:
        """Write finished pieces in order until at most `keep` are pending (bounds the memory)."""
        while self.pending and (len(self.pending) > keep or self.pending[0].done()):
            self._idat(self.pending.popleft().result())

    def write(self, rows: np.ndarray) -> None:
        """rows: [r, W, C] uint8 (8-bit) or uint16 (16-bit)."""
        if self.bits == 16:
            rows = rows.astype(">u2")
        raw = np.ascontiguousarray(rows).reshape(rows.shape[0], -1).view(np.uint8)
        lines = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
        if self.level == 0:
            lines[:, 0], lines[:, 1:] = 0, raw  # filter "None"
        else:
            lines[:, 0] = 1  # filter "Sub": byte - byte one pixel left (uint8 arithmetic wraps, as PNG wants)
            lines[:, 1:self.bpp + 1] = raw[:, :self.bpp]
            np.subtract(raw[:, self.bpp:], raw[:, :-self.bpp], out=lines[:, self.bpp + 1:])
        step = max(1, self.PIECE // lines.shape[1])
        for r in range(0, lines.shape[0], step):
            piece = lines[r:r + step].tobytes()
            self.adler = zlib.adler32(piece, self.adler)
            self.pending.append(self.pool.submit(_deflate_piece, piece, self.level))
            self._drain(keep=2 * self.workers)

    def close(self) -> None:
        self._drain(keep=0)
        self.pool.shutdown()
        final = zlib.compressobj(self.level, zlib.DEFLATED, -15).flush()  # an empty last block
        self._idat(final + struct.pack(">I", self.adler))
        self.file.write(self._chunk(b"IEND", b""))
        self.file.close()

    def abandon(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        self.file.close()


class TiffStream:
    def __init__(self, path: Path, width: int, height: int, channels: int, bits: int):
        self.nbytes = width * height * channels * bits // 8
        if self.nbytes + 4096 >= 2**32:
            raise SrlabError(f"{path}: {width}x{height} is over the 4 GiB a TIFF can hold; use format=png")
        self.shape, self.bits = (width, height, channels), bits
        self.file = open(path, "wb")
        self.file.write(b"II*\x00" + struct.pack("<I", 0))  # IFD offset filled in by close()

    def write(self, rows: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(rows.astype("<u2") if self.bits == 16 else rows).tobytes())

    def close(self) -> None:
        width, height, c = self.shape
        pos = 8 + self.nbytes + (self.nbytes & 1)  # IFDs start on a word boundary
        self.file.write(b"\x00" * (self.nbytes & 1))
        bits_at = pos
        extra = struct.pack(f"<{c}H", *[self.bits] * c) if c > 2 else b""
        ifd_at = pos + len(extra) + (len(extra) & 1)
        short = lambda v: struct.pack("<HH", v, 0)  # noqa: E731 - a SHORT left-justified in 4 bytes
        entries = [(256, 4, 1, struct.pack("<I", width)), (257, 4, 1, struct.pack("<I", height)),
                   (258, 3, c, struct.pack("<I", bits_at) if c > 2 else struct.pack("<HH", self.bits, self.bits)),
                   (259, 3, 1, short(1)), (262, 3, 1, short(2 if c >= 3 else 1)), (273, 4, 1, struct.pack("<I", 8)),
                   (277, 3, 1, short(c)), (278, 4, 1, struct.pack("<I", height)),
                   (279, 4, 1, struct.pack("<I", self.nbytes)), (284, 3, 1, short(1))]
        if c in (2, 4):
            entries.append((338, 3, 1, short(2)))  # extra sample: unassociated alpha
        ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, k, n) + v for t, k, n, v in entries)
        self.file.write(extra + b"\x00" * (len(extra) & 1) + ifd + struct.pack("<I", 0))
        self.file.seek(4)
        self.file.write(struct.pack("<I", ifd_at))
        self.file.close()

    def abandon(self) -> None:
        self.file.close()


def open_stream(path: Path, width: int, height: int, channels: int, bits: int, png_level: int = 1,
                suffix: str | None = None):
    """A stream writing `path`, in the format of `suffix` (default: `path`'s own; a temporary
    name has none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if SUFFIXES.get((suffix or path.suffix).lower()) == "tiff":
        return TiffStream(path, width, height, channels, bits)
    return PngStream(path, width, height, channels, bits, png_level)


class BackgroundWriter:
    """Feeds bands to a stream from a thread; at most `depth` bands wait, so memory stays bounded."""

    def __init__(self, stream, timer=None, depth: int = 2):
        self.stream, self.timer, self.error = stream, timer, None
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (rows := self.queue.get()) is not None:
            if self.error is None:
                start = time.perf_counter()
                try:
                    self.stream.write(rows)
                except Exception as e:  # e.g. disk full: reported by close(), in the caller's thread
                    self.error = e
                if self.timer is not None:
                    self.timer.add("write", time.perf_counter() - start)

    def write(self, rows: np.ndarray) -> None:
        self.queue.put(rows)

    def abort(self) -> None:
        """Stop after a failure upstream: drop what waits, end the thread, close the file."""
        self.error = self.error or RuntimeError("aborted")
        self.queue.put(None)
        self.thread.join()
        self.stream.abandon()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is None:
            start = time.perf_counter()
            self.stream.close()
            if self.timer is not None:
                self.timer.add("write", time.perf_counter() - start)
        else:
            self.stream.abandon()
            raise SrlabError(f"cannot write {self.stream.file.name}: {self.error}")
