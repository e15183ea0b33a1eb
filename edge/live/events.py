"""Smoothed probabilities -> action segments, with hysteresis and a minimum duration."""
from __future__ import annotations

import numpy as np

from edge.live.config import EventsConfig
from edge.modalities import MODALITIES, best_action


class EventTracker:
    """EMA-smooths verb and noun probabilities; an action (verb, noun) starts when its smoothed confidence
    p(verb) * p(noun) reaches `start_at` and ends when it falls below `end_below` or another action takes over.
    With an action list (a fine-tuned bundle's) only a listed (verb, noun) pair is ever tracked."""

    def __init__(self, cfg: EventsConfig, labels: dict[str, list[str]], actions=None) -> None:
        self.cfg, self.labels, self.actions = cfg, labels, actions
        self._verb: np.ndarray | None = None
        self._noun: np.ndarray | None = None
        self._open: dict | None = None
        self.emitted = 0

    def update(self, t: float, verb_probs: np.ndarray | None, noun_probs: np.ndarray | None,
               modalities: list[str]) -> list[dict]:
        """Feed one prediction (None probabilities: no prediction, e.g. nothing usable); return finished events."""
        if verb_probs is None:
            self._verb = self._noun = None
            return self._close(t)
        a = self.cfg.ema_alpha
        self._verb = verb_probs if self._verb is None else a * verb_probs + (1 - a) * self._verb
        self._noun = noun_probs if self._noun is None else a * noun_probs + (1 - a) * self._noun
        v, n = best_action(self._verb, self._noun, self.actions)
        conf = float(self._verb[v] * self._noun[n])
        out: list[dict] = []
        cur = self._open
        if cur is not None and ((v, n) != cur["key"] or conf < self.cfg.end_below):
            out = self._close(t)
            cur = None
        if cur is None and conf >= self.cfg.start_at:
            self._open = {"key": (v, n), "start": t, "peak": conf, "sum": 0.0, "n": 0, "modalities": set()}
        if self._open is not None:
            self._open["end"] = t
            self._open["sum"] += conf
            self._open["n"] += 1
            self._open["modalities"].update(modalities)
        return out

    def _close(self, t: float) -> list[dict]:
        ev, self._open = self._open, None
        if ev is None or t - ev["start"] < self.cfg.min_duration_s:
            return []
        self.emitted += 1
        v, n = ev["key"]
        return [{"type": "event", "start": round(ev["start"], 3), "end": round(t, 3),
                 "verb": self.labels["verb"][v], "noun": self.labels["noun"][n],
                 "confidence": round(ev["sum"] / ev["n"], 4),
                 "modalities": [m for m in MODALITIES if m in ev["modalities"]]}]

    def flush(self, t: float) -> list[dict]:
        """Close the open event at the end of a run."""
        return self._close(t)
