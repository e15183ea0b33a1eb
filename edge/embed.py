"""The recognizer for your own capture loop (a game engine, a ROS node, a phone bridge): push frames and audio
with their capture times, get predictions and finished action events back. No threads and no I/O: `run_live.py`
wraps the same core (`edge.live.core.Recognizer`) with cameras, microphones, sinks and a clock.

    from edge import ActionRecognizer
    rec = ActionRecognizer()                      # the shipped int8 student; or ActionRecognizer("my/bundle")
    for record in rec.push_frame(rgb_frame, t):   # HxWx3 uint8 RGB (bgr=True: OpenCV's order), t in seconds
        ...                                        # {"type": "prediction", "verb", "noun", "confidence", ...}
    rec.push_audio(mono_float32_block, t_end)     # at rec.audio_rate Hz; t_end: time of its last sample
    rec.finish()                                  # the last open event

Times are any clock's seconds, the same clock for frames and audio; the first push sets the stream's origin.
A sensor that stops delivering is noticed when later data or `advance(now)` moves time on: the predictions then
say what is missing and go on with the rest.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.assets import default_bundle
from edge.bundle import Bundle, load_bundle
from edge.live.config import RuntimeConfig, load_runtime_config
from edge.live.core import Recognizer
from edge.live.health import CONNECTED
from edge.errors import PreprocessError
from edge.preprocess import CameraFrame


class ActionRecognizer:
    """One stream's recognizer. `bundle`: a bundle folder or a loaded Bundle (default: the shipped int8 student);
    `camera` / `audio_rate`: which sensors you will push (False / None: absent, and predictions say so);
    `bgr`: frames arrive in OpenCV's BGR order; `config`: a runtime YAML path or a RuntimeConfig."""

    def __init__(self, bundle: str | Path | Bundle | None = None, *, camera: bool = True,
                 audio_rate: int | None = 16000, bgr: bool = False, config: str | Path | RuntimeConfig | None = None
                 ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle or default_bundle(), threads=1)
        cfg = config if isinstance(config, RuntimeConfig) else load_runtime_config(config)
        states = {"V": CONNECTED if camera else "off", "A": CONNECTED if audio_rate else "off"}
        self.audio_rate, self.bgr = audio_rate, bgr
        self.core = Recognizer(self.bundle, cfg, states, audio_rate)
        self._started = False

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.bundle.labels

    def _start(self, t: float) -> None:
        if not self._started:
            self.core.reset(origin=t)
            self._started = True

    def push_frame(self, frame: np.ndarray, t: float) -> list[dict]:
        """One camera frame captured at `t`; the records its arrival made due (often none: 4 samples a second)."""
        self._start(t)
        try:
            captured = CameraFrame(frame, self.bgr)
        except PreprocessError:     # a frame no conversion can use: counted, and the caller told
            self.core.metrics.count("bad_frames")
            raise
        self.core.push_frame(t, captured, time.monotonic())
        return self.core.tick(t)

    def push_audio(self, samples: np.ndarray, t_end: float) -> list[dict]:
        """A block of mono samples at `audio_rate` whose last sample was captured at `t_end`; the records due."""
        if self.audio_rate is None:
            raise ValueError("this recognizer was made with audio_rate=None: it takes no audio.")
        self._start(t_end - len(samples) / self.audio_rate)
        self.core.push_audio(t_end, np.asarray(samples, np.float32).reshape(-1), time.monotonic())
        return self.core.tick(t_end)

    def advance(self, now: float) -> list[dict]:
        """Let stream time reach `now` without new data (a sensor fell silent): the records that made due."""
        self._start(now)
        return self.core.tick(now)

    def finish(self) -> list[dict]:
        """End of the stream: the open action event, closed."""
        return self.core.finish()

    def reset(self) -> None:
        """Forget the stream (buffers, events); the next push starts a new one."""
        self._started = False
        self.core.reset()
