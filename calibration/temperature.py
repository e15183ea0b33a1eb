"""Temperature scaling (one T per modality subset, shared by the verb and noun heads) and calibration error.

The runtime divides both heads' logits by the subset's T before the softmax. The action confidence is
p(verb) * p(noun) of the top pair; its expected calibration error (ECE) is what a threshold relies on.
"""
from __future__ import annotations

import math

import numpy as np

T_RANGE = (0.05, 20.0)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(verb_logits: np.ndarray, noun_logits: np.ndarray, verb: np.ndarray, noun: np.ndarray,
        temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true (verb, noun) pair, both heads scaled by 1 / temperature."""
    rows = np.arange(len(verb))
    lv = _log_softmax(verb_logits / temperature)[rows, verb]
    ln = _log_softmax(noun_logits / temperature)[rows, noun]
    return float(-(lv + ln).mean())


def fit_temperature(verb_logits: np.ndarray, noun_logits: np.ndarray, verb: np.ndarray, noun: np.ndarray,
                    iterations: int = 80) -> float:
    """The T in T_RANGE minimising the NLL (golden-section search on log T; the NLL is unimodal in it)."""
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def f(log_t: float) -> float:
        return nll(verb_logits, noun_logits, verb, noun, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(iterations):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return float(math.exp(0.5 * (lo + hi)))


def action_confidence(verb_logits: np.ndarray, noun_logits: np.ndarray, verb: np.ndarray, noun: np.ndarray,
                      temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the top (verb, noun) pair, whether that pair is right) per clip."""
    pv = np.exp(_log_softmax(verb_logits / temperature))
    pn = np.exp(_log_softmax(noun_logits / temperature))
    confidence = pv.max(axis=1) * pn.max(axis=1)
    correct = (pv.argmax(axis=1) == verb) & (pn.argmax(axis=1) == noun)
    return confidence, correct


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE in %: the mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(100.0 * total / max(len(confidence), 1))
