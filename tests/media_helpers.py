"""Tiny media for the real-dataset tests: flat-grey frames whose level names the frame, small videos."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def grey(level: int, w: int = 32, h: int = 24) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def write_video(path: Path, n: int, fps, *, audio: bool, codec: str = "libx264", level=lambda k: 2 * k,
                audio_layout: str = "mono", amplitude: float = 0.3) -> None:
    """n flat-grey frames (frame k at level(k)); optional 440 Hz audio track at 48 kHz (the same sine on every
    channel of `audio_layout`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
        if audio:
            ast = c.add_stream("aac" if codec == "libx264" else "libopus", rate=48000)
            ast.layout = audio_layout
        for k in range(n):
            for p in vs.encode(av.VideoFrame.from_ndarray(grey(level(k)), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            t = np.arange(int(n / float(fps) * 48000)) / 48000
            x = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            channels = av.AudioLayout(audio_layout).nb_channels
            for i in range(0, x.size, 960):
                block = np.repeat(x[i:i + 960, None], channels, axis=1).reshape(1, -1)   # interleaved
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="flt", layout=audio_layout)
                fr.sample_rate = 48000
                for p in ast.encode(fr):
                    c.mux(p)
            for p in ast.encode():
                c.mux(p)


def corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x01 not a video at all " * 50)
