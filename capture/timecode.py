"""The burned-in capture clock of test sources (DESIGN.md).

The top-left row of 48 squares of 16×16 px holds the capture wall-clock time in
milliseconds since the Unix epoch, most significant bit first, black = 0, white = 1.
Pictures narrower than 768 px use the largest squares that fit (width // 48).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BITS = 48
SQUARE = 16
LUMA_BLACK = 16
LUMA_WHITE = 235


def square_for(width: int) -> int:
    return max(min(SQUARE, width // BITS), 1)


def burn_timestamp(luma: npt.NDArray[np.uint8], millis: int) -> None:
    """Write `millis` into the top-left squares of a luma (or grey) plane, in place."""
    square = square_for(luma.shape[1])
    bits = (millis >> np.arange(BITS - 1, -1, -1, dtype=np.int64)) & 1
    row = np.repeat(np.where(bits == 1, LUMA_WHITE, LUMA_BLACK).astype(np.uint8), square)
    luma[:square, : BITS * square] = row


def _cells(luma: npt.NDArray[np.uint8], square: float) -> npt.NDArray[np.float64]:
    """Mean luma at the centre of each of the 48 cells, for a (possibly fractional) size."""
    radius = int(square / 4)
    y = int(square / 2)
    band = luma[max(y - radius, 0) : y + radius + 1].astype(np.float64).mean(axis=0)
    centres = ((np.arange(BITS) + 0.5) * square).astype(np.int64)
    offsets = np.arange(-radius, radius + 1)
    columns = np.clip(centres[:, None] + offsets[None, :], 0, band.shape[0] - 1)
    means: npt.NDArray[np.float64] = band[columns].mean(axis=1)
    return means


def _unclear(means: npt.NDArray[np.float64]) -> float:
    """How far the cells are from clean black or white (full or limited range)."""
    return float(
        np.minimum(np.clip(means - LUMA_BLACK, 0, None), np.clip(LUMA_WHITE - means, 0, None)).max()
    )


def estimate_square(luma: npt.NDArray[np.uint8]) -> float:
    """The size of the burned-in clock's squares in a picture, in pixels (readers that see
    many frames of one size find it once). Until 2039 the 7 top bits are 0 and bit 40 is
    1: the first white starts at 7 squares."""
    row = luma[1].astype(np.float64)
    white = np.flatnonzero(row > (LUMA_BLACK + LUMA_WHITE) / 2)
    coarse = white[0] / 7 if white.size and white[0] > 0 else float(SQUARE)
    candidates = np.arange(coarse * 0.9, coarse * 1.1 + 0.01, 0.02)
    candidates = candidates[candidates * BITS <= luma.shape[1]]
    if not candidates.size:
        return coarse
    return float(min(candidates, key=lambda c: _unclear(_cells(luma, float(c)))))


def read_timestamp(luma: npt.NDArray[np.uint8], square: float | None = None) -> int:
    """Decode the burned-in time from a luma/grey plane.

    Without `square`, the size is found from the picture, so a scaled rendition decodes
    as well as the original.
    """
    if square is None:
        square = estimate_square(luma)
    bits = _cells(luma, square) > (LUMA_BLACK + LUMA_WHITE) / 2
    millis = 0
    for bit in bits:
        millis = (millis << 1) | int(bit)
    return millis
