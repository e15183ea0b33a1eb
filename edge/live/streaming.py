"""The streaming student: each sampled frame, flow field and audio hop is encoded once, as it arrives;
a prediction runs only the fusion model over the last tokens of each modality and the availability mask."""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from edge.bundle import FUSION_INPUT, Bundle
from edge.modalities import MODALITIES, subset_key
from edge.errors import ConfigError
from edge.live.metrics import Metrics
from edge.preprocess import (compute_flow, flow_to_model_input, make_flow_backend, to_gray, video_input,
                             window_to_model_input)
from edge.preprocess.config import FlowConfig


class TokenRing:
    """The last `capacity` tokens of one modality (preallocated), with each token's input arrival time."""

    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = capacity
        self._tokens = np.zeros((capacity, dim), np.float32)
        self._arrival = np.zeros(capacity)
        self.count = 0  # tokens pushed since the last reset

    def push(self, token: np.ndarray, arrival: float) -> None:
        slot = self.count % self.capacity
        self._tokens[slot] = token
        self._arrival[slot] = arrival
        self.count += 1

    def reset(self) -> None:
        self.count = 0

    @property
    def newest_arrival(self) -> float | None:
        return None if self.count == 0 else float(self._arrival[(self.count - 1) % self.capacity])

    def window(self) -> np.ndarray:
        """(capacity, dim) oldest first; a ring not yet full repeats its oldest token in the missing slots."""
        n = min(self.count, self.capacity)
        if n == 0:
            return np.zeros_like(self._tokens)
        idx = (np.arange(self.count - n, self.count)) % self.capacity
        if n < self.capacity:
            idx = np.concatenate([np.full(self.capacity - n, idx[0]), idx])
        return self._tokens[idx]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


class StreamingStudent:
    """Token rings per modality over a bundle's encoders; `predict` runs fusion only.

    Flow runs on `flow_side` x `flow_side` gray frames (the model's frame size unless `flow_size` asks for more,
    e.g. a camera's resolution) and is brought to the model's size and pixel units before its encoder;
    `flow_backend` ("" = the bundle's) may replace the backend the model was trained with.
    """

    def __init__(self, bundle: Bundle, min_tokens: dict[str, int], metrics: Metrics | None = None,
                 flow_size: int = 0, flow_backend: str = "") -> None:
        self.bundle = bundle
        self.cfg = bundle.preprocess
        self.metrics = metrics or Metrics()
        if 0 < flow_size < self.cfg.frame_size:
            raise ConfigError(f"flow.size {flow_size} is below the model's frame size {self.cfg.frame_size}; "
                              f"use 0 (the model's size) or at least {self.cfg.frame_size}.")
        self.flow_side = flow_size or self.cfg.frame_size
        self._flow_pre = dataclasses.replace(self.cfg, frame_size=self.flow_side)
        trained = self.cfg.flow
        self.flow_backend = make_flow_backend(trained if flow_backend in ("", trained.backend)
                                              else FlowConfig(backend=flow_backend))
        tokens, dims = bundle.manifest["tokens"], bundle.manifest["token_dim"]
        self.rings = {m: TokenRing(tokens[m], dims[m]) for m in MODALITIES}
        self.min_tokens = {m: min(min_tokens[m], tokens[m]) for m in MODALITIES}
        self._prev_gray: np.ndarray | None = None
        self._prev_frame: np.ndarray | None = None    # the video encoder's state: the previous sampled frame

    def warm_up(self) -> None:
        """Run every model and the flow once on dummy inputs, so the first live tick does not pay for
        onnxruntime's and OpenCV's first-call setup; the rings are left empty and the timings unrecorded."""
        metrics, self.metrics = self.metrics, Metrics()
        s, f = self.cfg.frame_size, self.flow_side
        try:
            for _ in range(2):
                self.add_frame(np.zeros((s, s, 3), np.uint8), 0.0, 1.0, np.zeros((f, f, 3), np.uint8))
            self.add_audio(np.zeros(self.cfg.audio_window_samples, np.float32), self.cfg.audio_sample_rate, 0.0)
            self.logits((True, True, True))
        finally:
            self.metrics = metrics
            self.reset_video()
            self.reset_audio()

    def add_frame(self, frame: np.ndarray, arrival: float, flow_scale: float | None,
                  flow_frame: np.ndarray | None = None) -> float:
        """Encode one sampled model-size RGB frame (with its difference to the previous sampled frame when the
        bundle's video_input asks for it); with a flow scale, also the flow against the previous sampled frame
        (None: flow is shed, F's ring restarts). `flow_frame`: the same picture at flow_side (None: `frame`, for
        flow at the model's size). Returns the flow's ms (0 when none was computed)."""
        m = self.metrics
        with m.time("video_encoder"):
            token = self.bundle.run("video_encoder", frame=video_input(frame, self._prev_frame, self.cfg)[None])[0]
        self.rings["V"].push(token[0], arrival)
        self._prev_frame = frame.copy()
        gray = to_gray(frame if flow_frame is None else flow_frame)
        flow_ms = 0.0
        if flow_scale is None:
            self.rings["F"].reset()
        elif self._prev_gray is not None:
            start = time.perf_counter()
            flow = self.model_flow(self._prev_gray, gray, flow_scale)
            flow_input = flow_to_model_input(flow, self.cfg)[None]
            flow_ms = (time.perf_counter() - start) * 1000.0
            m.stage("flow", flow_ms)
            with m.time("flow_encoder"):
                token = self.bundle.run("flow_encoder", flow=flow_input)[0]
            self.rings["F"].push(token[0], arrival)
        self._prev_gray = gray
        return flow_ms

    def model_flow(self, prev_gray: np.ndarray, gray: np.ndarray, scale: float) -> np.ndarray:
        """Flow computed at flow_side * scale, as the model sees it: at its frame size, in its pixels."""
        flow = compute_flow(self.flow_backend, prev_gray, gray, self._flow_pre, scale=scale)
        size = self.cfg.frame_size
        if flow.shape[0] == size:
            return flow
        return cv2.resize(flow, (size, size), interpolation=cv2.INTER_AREA) * (size / flow.shape[0])

    def add_audio(self, window: np.ndarray, rate: int, arrival: float) -> None:
        """Encode one audio window (the last audio_window_s, any rate; resampled to the model rate)."""
        with self.metrics.time("logmel"):
            logmel = window_to_model_input(window, rate, self.cfg)[None]
        with self.metrics.time("audio_encoder"):
            token = self.bundle.run("audio_encoder", logmel=logmel)[0]
        self.rings["A"].push(token[0], arrival)

    def reset_video(self) -> None:
        self.rings["V"].reset()
        self.rings["F"].reset()
        self._prev_gray = None
        self._prev_frame = None

    def reset_audio(self) -> None:
        self.rings["A"].reset()

    def ready(self, modality: str) -> bool:
        return self.rings[modality].count >= self.min_tokens[modality]

    def logits(self, mask: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
        """Fusion over the current token windows; missing modalities are masked out (their tokens unused)."""
        with self.metrics.time("fusion"):
            windows = {FUSION_INPUT[m]: self.rings[m].window()[None] for m in MODALITIES}
            verb, noun = self.bundle.run("fusion", **windows, mask=np.asarray([mask], np.float32))
        return verb[0], noun[0]

    def predict(self, mask: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated verb and noun probabilities (the bundle's temperature for this modality subset)."""
        verb, noun = self.logits(mask)
        temperature = self.bundle.temperature(subset_key(mask))
        return softmax(verb / temperature), softmax(noun / temperature)

    def newest_arrival(self, mask: tuple[bool, bool, bool]) -> float | None:
        """Arrival time of the newest input behind the tokens in use (for capture-to-prediction latency)."""
        times = [self.rings[m].newest_arrival for m, on in zip(MODALITIES, mask) if on]
        times = [t for t in times if t is not None]
        return max(times) if times else None
