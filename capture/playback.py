"""The classroom speakers: sound played out through ALSA (PyAV's alsa output device),
from a thread of its own. A pupil the teacher lets speak is heard here.

`level` is the loudness of what played in the last moments, so the microphone can be
ducked while the speakers talk (the classroom mic would otherwise send a pupil their own
voice back).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from typing import Any

import av
import numpy as np

from .device import SYSTEM_ALSA_CONFIG, quiet_alsa

logger = logging.getLogger(__name__)

RATE = 48000
QUEUE_FRAMES = 50  # ~1 s of 20 ms frames; a speaker that falls behind drops the oldest
LEVEL_HOLD = 0.3  # seconds a loud frame keeps `level` up


class Speaker:
    """`play(frame)` from any thread; `start()`/`stop()` own the output thread."""

    def __init__(self, device: str = "default", *, channels: int = 1) -> None:
        self.device = device
        self.channels = channels
        self._frames: queue.Queue[av.AudioFrame | None] = queue.Queue(QUEUE_FRAMES)
        self._thread: threading.Thread | None = None
        self._resampler = av.AudioResampler(
            format="s16", layout="mono" if channels == 1 else "stereo", rate=RATE
        )
        self.played = 0  # frames written to the device
        self.dropped = 0
        self.error: str | None = None
        self._loud_until = 0.0
        self._last_rms = 0.0
        if "ALSA_CONFIG_PATH" not in os.environ and SYSTEM_ALSA_CONFIG.exists():
            os.environ["ALSA_CONFIG_PATH"] = str(SYSTEM_ALSA_CONFIG)
        quiet_alsa()  # a missing speaker is said by `error`, not by alsa-lib on stderr

    @property
    def level(self) -> float:
        """RMS (0..1) of the loud sound played within the last `LEVEL_HOLD` s, else 0."""
        return self._last_rms if time.monotonic() < self._loud_until else 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._put(None)
            thread.join(5)

    def play(self, frame: av.AudioFrame) -> None:
        """Queue a frame (any rate and layout); the oldest go when the device lags."""
        self._put(frame)

    def _put(self, item: av.AudioFrame | None) -> None:
        while True:
            try:
                self._frames.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._frames.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _open(self) -> tuple[Any, Any]:
        container: Any = av.open(self.device, "w", format="alsa")
        stream = container.add_stream("pcm_s16le", rate=RATE)
        stream.codec_context.layout = "mono" if self.channels == 1 else "stereo"
        return container, stream

    def _run(self) -> None:
        container: Any = None
        stream: Any = None
        pts = 0
        try:
            while (frame := self._frames.get()) is not None:
                frame.pts = None
                for chunk in self._resampler.resample(frame):
                    samples = chunk.to_ndarray().astype(np.float64) / 32768.0
                    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
                    if rms > 0.01:  # about -40 dBFS: someone is talking
                        self._last_rms, self._loud_until = rms, time.monotonic() + LEVEL_HOLD
                    try:
                        if container is None:
                            container, stream = self._open()
                        chunk.pts = pts
                        pts += chunk.samples
                        for packet in stream.encode(chunk):
                            container.mux(packet)  # (a missing device fails here, not at open)
                    except (OSError, ValueError) as exc:  # av.FFmpegError is an OSError
                        if self.error is None:
                            logger.warning("speaker %s: %s", self.device, exc)
                        self.error = str(exc)
                        self._discard(container)
                        container = stream = None
                        time.sleep(1.0)  # then the next frame tries again
                        continue
                    self.played += 1
                    self.error = None
        finally:
            if container is not None:
                try:
                    for packet in stream.encode(None):
                        container.mux(packet)
                    container.close()
                except (OSError, ValueError) as exc:
                    logger.warning("closing speaker %s: %s", self.device, exc)

    @staticmethod
    def _discard(container: Any) -> None:
        if container is not None:
            with contextlib.suppress(OSError, ValueError):
                container.close()
