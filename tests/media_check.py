"""Reading recordings back: ffprobe (Debian's ffmpeg) for what a player sees, PyAV for
the synthetic sources' marks (the camera's flash, the tone's beep)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from capture.synthetic import FLASH_SQUARE

BEEP_RMS = 0.12  # the tone alone is ~0.06, tone + beep ~0.19 (full scale 1.0)
HOP = 0.002  # s


@dataclass(frozen=True)
class Probed:
    duration: float
    streams: list[dict[str, object]]

    def codecs(self) -> list[str]:
        return [str(s["codec_name"]) for s in self.streams]

    def video(self) -> dict[str, object]:
        return next(s for s in self.streams if s["codec_type"] == "video")


def ffprobe(path: Path) -> Probed:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    body = json.loads(out.stdout)
    return Probed(float(body["format"]["duration"]), body["streams"])


def decodes_cleanly(path: Path) -> tuple[int, str]:
    """Frames ffmpeg decodes from the file's first video stream, and what it complained of."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return int(probe.stdout.strip() or 0), out.stderr.strip()


def flash_times(path: Path) -> list[float]:
    """Moments (s, file time) of the frames showing the camera's white square."""
    found = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            luma = frame.to_ndarray(format="gray")
            width = luma.shape[1]
            square = luma[
                4 : FLASH_SQUARE - 4, width - 2 * FLASH_SQUARE + 4 : width - FLASH_SQUARE - 4
            ]
            if square.mean() > 128 and frame.pts is not None and frame.time_base is not None:
                found.append(float(frame.pts * frame.time_base))
    return found


def beep_onsets(path: Path) -> list[float]:
    """Moments (s, file time) where the tone's beeps start."""
    chunks: list[np.ndarray] = []
    first: float | None = None
    rate = 48000
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            if first is None and frame.pts is not None and frame.time_base is not None:
                first = float(frame.pts * frame.time_base)
                rate = frame.sample_rate
            samples = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("s16"):
                samples /= 32768.0
            chunks.append(samples.reshape(-1, samples.shape[-1])[0])
    signal = np.concatenate(chunks)
    hop = int(rate * HOP)
    frames = signal[: len(signal) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames**2).mean(axis=1))
    loud = rms > BEEP_RMS
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    onsets: list[float] = []
    last = -1.0
    for index in starts:
        moment = (first or 0.0) + float(index) * HOP
        if moment - last > 0.5:  # one onset per beep
            onsets.append(moment)
            last = moment
    return onsets


def pair_up(beeps: list[float], flashes: list[float]) -> list[float]:
    """For each beep, the signed distance (s) to the nearest flash."""
    if not flashes:
        return []
    marks = np.asarray(flashes)
    return [float(marks[np.abs(marks - beep).argmin()] - beep) for beep in beeps]
