"""The burned-in capture clock of test sources (DESIGN.md).

The top-left row of 48 squares of 16×16 px holds the capture wall-clock time in
milliseconds since the Unix epoch, most significant bit first, black = 0, white = 1.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BITS = 48
SQUARE = 16
LUMA_BLACK = 16
LUMA_WHITE = 235


def burn_timestamp(luma: npt.NDArray[np.uint8], millis: int, square: int = SQUARE) -> None:
    """Write `millis` into the top-left squares of a luma (or grey) plane, in place."""
    row = np.empty(BITS * square, dtype=np.uint8)
    for bit in range(BITS):
        value = (millis >> (BITS - 1 - bit)) & 1
        row[bit * square : (bit + 1) * square] = LUMA_WHITE if value else LUMA_BLACK
    luma[:square, : BITS * square] = row


def read_timestamp(luma: npt.NDArray[np.uint8], square: int = SQUARE) -> int:
    """Decode the burned-in time from a luma/grey plane (scale `square` with the frame)."""
    millis = 0
    half = max(square // 2, 1)
    quarter = max(square // 4, 1)
    for bit in range(BITS):
        x0 = bit * square + quarter
        cell = luma[quarter : quarter + half, x0 : x0 + half]
        millis = (millis << 1) | int(float(cell.mean()) > 128.0)
    return millis
