"""What a virtual camera and microphone show: one MovingDigits-AV scene running in real time (a textured surface
seen by a wandering head camera, its background noise), idle until a take of an own action is played on it.

The stage is a frame source for `edge.bench.mjpeg.MJPEGServer` (frame k of the stream is due at t0 + k / fps and
rendered when a client asks for it, so nothing is rendered while no one watches) and feeds its audio into a
PulseAudio sink (`edge.bench.pulse.PcmFeed`) from a thread paced by the same clock, so picture and sound stay
together. `play(split, action)` starts a freshly drawn take at the next frame; the scene (surface, camera path,
noise floor) runs on through it, as in a session.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from edge.moving_digits.config import NuisanceLevels
from edge.moving_digits.own_actions import OWN_ACTIONS, OWN_SPLITS, own_sources, plan_own_clip
from edge.moving_digits.render import make_scene, render_frames, render_idle

BLOCK_S = 0.02          # audio block written at a time
AHEAD_S = 0.12          # how far ahead of its time a block is handed to PulseAudio (rides out short stalls)
NOISE_LOOP_S = 30.0     # the background noise is a loop this long
LATE_S = 0.3            # audio this late is skipped
FEEDER_NICE = -11       # the audio feeder thread's priority where the user may raise it (root)


@dataclass(frozen=True, eq=False)
class Played:
    """A take on the stage, in time.monotonic() seconds: the clip is shown from `shown` (a still card), its
    action runs from `start` to `end`."""

    split: str
    action: int
    clip: Any          # what the stage plays: a rendered ClipPlan, or a real take's decoded frames
    shown: float
    start: float
    end: float


class ClockedStage:
    """A camera picture and a microphone signal on one clock (t0): frame k of the stream is due at t0 + k / fps,
    rendered once when first asked for, and sample j at t0 + j / rate. Subclasses say what frame k shows
    (`picture`) and what samples sound (`audio`); the takes they play are `clips` on that timeline (each with a
    `frame_base` and `n_frames`)."""

    def __init__(self, size: tuple[int, int], fps: int, rate: int, quality: int) -> None:
        self.fps, self.rate, self.size, self.quality = fps, rate, size, quality
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self._jpeg = (-1, b"")
        self._stop = threading.Event()
        self._audio: threading.Thread | None = None
        self.clips: list = []

    def _on_air(self, k: int):
        """The clip stream frame k shows (None: no take, idle)."""
        with self.lock:
            return next((c for c in self.clips if c.frame_base <= k < c.frame_base + c.n_frames), None)

    def _put_on_air(self, make_clip: Callable[[int], Any]) -> tuple[Any, float]:
        """Put `make_clip(k)` on the stream from the next frame k on (clips that ended over a second ago are
        forgotten); returns it and the monotonic time frame k shows."""
        now = time.monotonic()
        k = int((now - self.t0) * self.fps) + 1        # placed once made (making it takes time)
        clip = make_clip(k)
        with self.lock:
            done = (now - self.t0) * self.fps
            self.clips = [c for c in self.clips if c.frame_base + c.n_frames > done - self.fps] + [clip]
        return clip, self.t0 + k / self.fps

    def picture(self, k: int) -> np.ndarray:
        """Stream frame k as RGB, any size (scaled to the camera's)."""
        raise NotImplementedError

    def audio(self, first: int, n: int) -> np.ndarray:
        """Stream samples first .. first + n - 1, float32 mono."""
        raise NotImplementedError

    def describe(self, played: Played) -> str | None:
        """Which take was played, where it has a name (a file)."""
        return None

    def prepare(self, split: str, action: int) -> None:
        """A take of `action` from `split` is about to be played (the countdown runs): get it ready if that takes
        time."""

    # ---- video -------------------------------------------------------------------------------------------------
    def frame(self, t: float) -> bytes:
        """The JPEG of the stream frame due at monotonic time t (one render per frame for any number of clients)."""
        k = max(0, int((t - self.t0) * self.fps))
        with self.lock:   # held only to read shared state: the audio feeder must never wait for a render
            if self._jpeg[0] == k:
                return self._jpeg[1]
        big = cv2.resize(self.picture(k), self.size, interpolation=cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        jpeg = buf.tobytes()
        with self.lock:
            self._jpeg = (k, jpeg)
        return jpeg

    # ---- audio -------------------------------------------------------------------------------------------------
    def start_audio(self, feed) -> None:
        """Feed the stream's audio into `feed` (write(float32 block)) in real time until stop()."""
        def run() -> None:
            try:   # a microphone is hardware that a busy CPU does not starve: ask for a higher priority if allowed
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FEEDER_NICE)
            except OSError:
                pass
            n = int(BLOCK_S * self.rate)
            j = int((time.monotonic() - self.t0) * self.rate)
            while not self._stop.is_set():
                due = self.t0 + j / self.rate - AHEAD_S
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -LATE_S:        # the sink stalled (as a fresh null sink does): skip to now rather than
                    j = int((time.monotonic() - self.t0) * self.rate)   # play everything after it late
                try:
                    feed.write(self.audio(j, n))
                except (BrokenPipeError, OSError):
                    return
                j += n

        self._audio = threading.Thread(target=run, name="stage-audio", daemon=True)
        self._audio.start()

    def stop(self) -> None:
        self._stop.set()
        if self._audio is not None:
            self._audio.join(timeout=2)


class Stage(ClockedStage):
    """The MovingDigits-AV scene, idle until a take of an own action is played on it."""

    def __init__(self, levels: NuisanceLevels, seed: int = 0, size: tuple[int, int] = (640, 480), fps: int = 30,
                 rate: int = 16000, render_size: int = 128, quality: int = 85) -> None:
        super().__init__(size, fps, rate, quality)
        self.levels, self.render_size = levels, render_size
        self.actions = OWN_ACTIONS
        self.rng = np.random.default_rng([seed, 0x57A6E])
        self.scene = make_scene(self.rng, levels, render_size)
        self.noise = self.scene.audio_noise(int(NOISE_LOOP_S * rate), rate)
        for split in OWN_SPLITS:       # load every split's symbols now, not when the first take must start
            own_sources(split, rate)

    def picture(self, k: int) -> np.ndarray:
        clip = self._on_air(k)
        return (render_frames(clip, [k - clip.frame_base])[0] if clip is not None
                else render_idle(self.scene, k, 1, self.fps)[0])

    def audio(self, first: int, n: int) -> np.ndarray:
        """Stream samples first .. first + n - 1: the noise loop plus the speech of every take overlapping them."""
        idx = (first + np.arange(n)) % self.noise.size
        out = self.noise[idx].copy()
        with self.lock:
            clips = list(self.clips)
        for c in clips:
            s0 = int(round(c.frame_base / self.fps * self.rate)) + c.speech_at
            lo, hi = max(first, s0), min(first + n, s0 + c.speech.size)
            if lo < hi:
                out[lo - first:hi - first] += c.speech[lo - s0:hi - s0]
        return np.clip(out, -1.0, 1.0)

    # ---- takes -------------------------------------------------------------------------------------------------
    def play(self, split: str, action: int) -> Played:
        """Show a new take of own action `action` (drawn from `split`'s sources) from the next frame on."""
        planned = plan_own_clip(split, action, self.rng, self.levels, scene=self.scene, fps=self.fps,
                                size=self.render_size, sample_rate=self.rate)
        clip, shown = self._put_on_air(lambda k: dataclasses.replace(planned, frame_base=k))
        start = shown + clip.lead_in_frames / self.fps
        return Played(split, action, clip, shown, start, start + (clip.n_frames - clip.lead_in_frames) / self.fps)

    def live_plays(self, action: int) -> int:
        """How many held-out takes of `action` the live step plays: one fresh take."""
        return 1

    # ---- what a recorded take must show ------------------------------------------------------------------------
    def reference(self, played: Played, step: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(seconds after `shown`, the take's frames, the scene's frames without it), every `step`-th frame."""
        clip = played.clip
        idx = list(range(0, clip.n_frames, step))
        empty = np.stack([render_idle(clip.scene, clip.frame_base + j, 1, clip.fps)[0] for j in idx])
        return np.asarray(idx) / clip.fps, render_frames(clip, idx), empty

    def sound(self, played: Played) -> tuple[np.ndarray, int] | None:
        """(the take's own sound, its first sample after `shown`)."""
        return played.clip.speech, played.clip.speech_at
