"""Synthetic sources for rooms without hardware, the demo and the tests.

Video frames carry the capture wall-clock time burned in (see `timecode`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from .source import Pacer, Source, SourceError
from .timecode import burn_timestamp

WallClock = Callable[[], float]

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font with Vietnamese glyphs when the system has one."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def rgb_to_yuv420(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    array = frame.reformat(format="yuv420p").to_ndarray()
    return np.asarray(array, dtype=np.uint8)


def yuv420_frame(planes: npt.NDArray[np.uint8]) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


FLASH_SQUARE = 32  # px: the top-right square that flashes white once a second


def flashes(moment: float, fps: float) -> bool:
    """Whether the frame captured at `moment` (monotonic) is the one nearest a whole
    second: the picture's flash, which lines up with `TestTone`'s beep."""
    return abs(moment - round(moment)) < 0.5 / fps


class TestCamera(Source):
    """A moving test scene (1280×720@30 by default) with the burned-in clock; the frame
    nearest each whole second of the monotonic clock shows a white square in its top
    right corner (black otherwise), the moment `TestTone` starts a beep."""

    kind = "video"
    __test__ = False  # not a pytest class

    def __init__(
        self,
        name: str = "camera",
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        label: str = "Camera lớp học · DEMO",
        wall_clock: WallClock = time.time,
    ) -> None:
        super().__init__(name)
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width, self.height, self.fps = width, height, fps
        self._wall_clock = wall_clock
        self._background = self._render_background(label)
        self.unplugged = threading.Event()  # set: behaves as a camera pulled out (tests, drills)

    def _render_background(self, label: str) -> npt.NDArray[np.uint8]:
        w, h = self.width, self.height
        x = np.linspace(0, 1, w, dtype=np.float32)
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        rgb[..., 0] = (40 + 60 * x + 0 * y).astype(np.uint8)
        rgb[..., 1] = (70 + 80 * y + 0 * x).astype(np.uint8)
        rgb[..., 2] = (110 + 60 * (1 - x) * (1 - y)).astype(np.uint8)
        image = Image.fromarray(rgb)
        draw = ImageDraw.Draw(image)
        size = max(h // 18, 12)
        draw.text((w // 20, h - 2 * size), label, fill=(255, 255, 255), font=font(size))
        for i in range(1, 8):  # a "board" grid so motion is easy to see
            draw.line([(i * w // 8, h // 6), (i * w // 8, h - 3 * size)], fill=(90, 110, 140))
        return rgb_to_yuv420(np.asarray(image))

    def _run(self) -> None:
        pacer = Pacer(self.fps, self._stopping)
        w, h = self.width, self.height
        box = max(h // 8, 8) // 2 * 2
        if self.unplugged.is_set():
            raise SourceError(f"{self.name}: no such device (unplugged)")
        self.state = "running"
        start = time.monotonic()
        while (tick := pacer.wait()) is not None:
            if self.unplugged.is_set():
                raise SourceError(f"{self.name}: device disconnected")
            planes = self._background.copy()
            t = tick - start
            bx = int((w - box) * (0.5 + 0.5 * math.sin(t * 0.9))) // 2 * 2
            by = int((h - box) * (0.5 + 0.45 * math.sin(t * 1.3 + 1.0))) // 2 * 2
            by = max(by, 2 * 16)
            planes[by : by + box, bx : bx + box] = 210  # luma of a bright box
            u0, v0 = h + by // 4, h + h // 4 + by // 4
            half = box // 2
            planes[u0 : u0 + half // 2, bx // 2 : bx // 2 + half] = 60
            planes[v0 : v0 + half // 2, bx // 2 : bx // 2 + half] = 200
            bar = int((t * 120) % w) // 2 * 2
            planes[h // 6 : h - h // 6, bar : bar + 8] = 235
            flash = 235 if flashes(tick, self.fps) else 16
            planes[:FLASH_SQUARE, w - 2 * FLASH_SQUARE : w - FLASH_SQUARE] = flash
            burn_timestamp(planes[:h], int(self._wall_clock() * 1000))
            self._emit(yuv420_frame(planes), tick)


SLIDES = (
    (
        "Toán 6 — Bài 12: Phân số bằng nhau",
        [
            "Hai phân số a/b và c/d bằng nhau nếu a·d = b·c.",
            "Ví dụ: 1/2 = 2/4 = 3/6",
            "Bài tập: Tìm x biết x/4 = 3/12.",
        ],
    ),
    (
        "Ngữ văn — Tập làm văn",
        [
            "Đề bài: Kể về một người bạn mà em yêu quý.",
            "Dàn ý: Mở bài – Thân bài – Kết bài",
            "Chú ý: dùng từ ngữ gợi tả, gợi cảm.",
        ],
    ),
    (
        "Khoa học tự nhiên — Vòng tuần hoàn của nước",
        [
            "Bay hơi → Ngưng tụ → Mưa → Dòng chảy",
            "Nước chiếm khoảng 71 % bề mặt Trái Đất.",
            "Câu hỏi: Vì sao trời có mây?",
        ],
    ),
)


class TestBoard(Source):
    """Slide-like text (1920×1080 at a few fps by default) with the burned-in clock."""

    kind = "video"
    __test__ = False

    def __init__(
        self,
        name: str = "board",
        *,
        width: int = 1920,
        height: int = 1080,
        fps: float = 5.0,
        slide_seconds: float = 10.0,
        wall_clock: WallClock = time.time,
    ) -> None:
        super().__init__(name)
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width, self.height, self.fps = width, height, fps
        self.slide_seconds = slide_seconds
        self._wall_clock = wall_clock
        self._slides = [self._render_slide(i) for i in range(len(SLIDES))]

    def _render_slide(self, index: int) -> npt.NDArray[np.uint8]:
        w, h = self.width, self.height
        title, lines = SLIDES[index]
        image = Image.new("RGB", (w, h), (250, 250, 245))
        draw = ImageDraw.Draw(image)
        margin = w // 16
        draw.rectangle([0, h // 14, w, h // 14 + h // 9], fill=(22, 84, 150))
        draw.text((margin, h // 14 + h // 40), title, fill=(255, 255, 255), font=font(h // 16))
        for i, line in enumerate(lines):
            draw.text((margin, h // 3 + i * h // 8), line, fill=(20, 20, 20), font=font(h // 20))
        draw.text(
            (margin, h - h // 12),
            f"Trang {index + 1}/{len(SLIDES)}",
            fill=(120, 120, 120),
            font=font(h // 36),
        )
        return rgb_to_yuv420(np.asarray(image))

    def _clock_patch(self, now: float) -> npt.NDArray[np.uint8]:
        size = self.height // 24
        image = Image.new("L", (size * 5, size + size // 3), 245)
        ImageDraw.Draw(image).text(
            (0, 0), time.strftime("%H:%M:%S", time.localtime(now)), fill=30, font=font(size)
        )
        return np.asarray(image)

    def _run(self) -> None:
        pacer = Pacer(self.fps, self._stopping)
        self.state = "running"
        start = time.monotonic()
        w, h = self.width, self.height
        while (tick := pacer.wait()) is not None:
            index = int((tick - start) / self.slide_seconds) % len(self._slides)
            planes = self._slides[index].copy()
            now = self._wall_clock()
            patch = self._clock_patch(now)
            ph, pw = patch.shape
            planes[h - ph - h // 40 : h - h // 40, w - pw - w // 40 : w - w // 40] = patch
            burn_timestamp(planes[:h], int(now * 1000))
            self._emit(yuv420_frame(planes), tick)


class TestTone(Source):
    """A quiet tone with a 150 ms beep starting at each whole second of the monotonic
    clock (48 kHz mono, 20 ms frames). Like a microphone it never loses samples: when
    its thread is late it catches up, each frame stamped with its own due time."""

    kind = "audio"
    __test__ = False

    def __init__(
        self,
        name: str = "mic",
        *,
        sample_rate: int = 48000,
        frame_ms: int = 20,
        tone_hz: float = 330.0,
        beep_hz: float = 880.0,
        volume: float = 1.0,
    ) -> None:
        super().__init__(name)
        self.sample_rate = sample_rate
        self.samples = sample_rate * frame_ms // 1000
        self.tone_hz, self.beep_hz = tone_hz, beep_hz
        self.volume = volume

    def _run(self) -> None:
        self.state = "running"
        start = time.monotonic()
        offset = 0  # samples emitted
        n = np.arange(self.samples, dtype=np.float64)
        while True:
            due = start + offset / self.sample_rate
            late = time.monotonic() - due
            if late < 0:
                if self._stopping.wait(-late):
                    return
                continue
            if self._stopping.is_set():
                return
            if late > 1.0:  # asleep for over a second (a suspended machine): start afresh
                start, offset = time.monotonic(), 0
                continue
            t = (offset + n) / self.sample_rate
            moment = start + t  # each sample's capture time, on the monotonic clock
            signal = 0.08 * np.sin(2 * math.pi * self.tone_hz * t)
            beeping = (moment % 1.0) < 0.15
            signal = signal + np.where(beeping, 0.25 * np.sin(2 * math.pi * self.beep_hz * t), 0.0)
            pcm = (signal * self.volume * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            offset += self.samples
            self._emit(frame, due)


def slate(width: int, height: int, title: str, detail: str = "") -> av.VideoFrame:
    """A still picture with a message (the camera paused for privacy, or reconnecting)."""
    image = Image.new("RGB", (width, height), (18, 48, 95))
    draw = ImageDraw.Draw(image)
    big, small = font(max(height // 12, 12)), font(max(height // 24, 10))
    for text, face, y in ((title, big, height * 0.4), (detail, small, height * 0.55)):
        if text:
            box = draw.textbbox((0, 0), text, font=face)
            draw.text(((width - (box[2] - box[0])) / 2, y), text, fill=(255, 255, 255), font=face)
    return yuv420_frame(rgb_to_yuv420(np.asarray(image)))
