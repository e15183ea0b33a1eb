"""Does a recorded take show what the stage played? Each take's frames in the session file are compared with the
frames the stage showed for it (edge/bench/stage.py, `reference`), at the camera's delay that fits best: the take
as played gives a small difference, the stage without it a large one."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


SIDE = 32               # frames are compared as SIDE x SIDE gray images
DELAYS_S = np.arange(-0.1, 0.45, 1 / 30)    # camera delays tried (the take starts when the prompt is printed)


def _small(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def decode_small(media: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every video frame of `media` as (times s, [n, SIDE, SIDE] float32 gray), in presentation order."""
    import av

    times, frames = [], []
    with av.open(str(media)) as c:
        stream = c.streams.video[0]
        for f in c.decode(stream):
            times.append(float(f.pts * stream.time_base))
            frames.append(_small(f.to_ndarray(format="rgb24")))
    order = np.argsort(times)
    return np.asarray(times)[order], np.stack(frames)[order]


def match_take(times: np.ndarray, frames: np.ndarray, start_s: float, offsets: np.ndarray, shown: np.ndarray,
               empty: np.ndarray) -> dict:
    """Mean absolute grey difference between the take starting at file time `start_s` and the frames the stage
    showed (`shown`, RGB, at `offsets` seconds after the take's start), at the best delay; and the same against
    what the stage shows without the take (`empty`) at that delay."""
    shown = np.stack([_small(f) for f in shown])
    empty = np.stack([_small(f) for f in empty])
    half_frame = 0.5 * float(np.median(np.diff(times)))
    best = None
    for delay in DELAYS_S:
        at = start_s + delay + offsets
        k = np.clip(np.searchsorted(times, at + half_frame) - 1, 0, len(times) - 1)
        mad = float(np.abs(frames[k] - shown).mean())
        if best is None or mad < best[0]:
            best = (mad, float(delay), k)
    mad, delay, k = best
    return {"delay_s": round(delay, 3), "mad": round(mad, 2), "mad_empty": round(float(np.abs(frames[k] - empty).mean()), 2)}


def decode_audio(media: Path) -> tuple[np.ndarray, int]:
    """The session file's audio as float32 mono and its rate."""
    import av

    with av.open(str(media)) as c:
        stream = c.streams.audio[0]
        blocks = [f.to_ndarray().reshape(-1) for f in c.decode(stream)]
        rate = stream.rate
    pcm = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
    return pcm.astype(np.float32) / 32768.0, rate


def _envelope(x: np.ndarray, hop: int) -> np.ndarray:
    n = x.size // hop
    return np.sqrt(np.mean(x[:n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))


def match_audio(audio: np.ndarray, rate: int, start_s: float, speech: np.ndarray, speech_at: int,
                hop_s: float = 0.01) -> dict:
    """Where the played sound is in the take (its delay after the clip's start, searched over -0.1..1 s) and how
    well the loudness envelopes agree there (Pearson correlation over the sound and 0.3 s around it). Envelopes,
    not waveforms: a sink that stalls for a moment splits a sound without making it another one."""
    hop = int(hop_s * rate)
    pad = int(0.3 * rate)
    played = np.zeros(speech.size + 2 * pad, np.float32)
    played[pad:pad + speech.size] = speech
    ref = _envelope(played, hop)
    at = int(start_s * rate) + speech_at - pad
    best = (-1.0, None)
    for lag in range(int(-0.1 / hop_s), int(1.0 / hop_s)):
        lo = at + lag * hop
        seg = audio[max(lo, 0):lo + played.size]
        if lo < 0 or seg.size < played.size:
            continue
        corr = float(np.corrcoef(_envelope(seg, hop), ref)[0, 1])
        if corr > best[0]:
            best = (corr, lag * hop_s)
    return {"audio_delay_s": None if best[1] is None else round(best[1], 3), "audio_corr": round(best[0], 3)}


def check_takes(media: Path, played: list, stage) -> dict:
    """Each take the recorder logged (in prompt order, one per take played) against what the stage played for it."""
    log = [json.loads(x) for x in media.with_suffix(".log.jsonl").read_text().splitlines()]
    times, frames = decode_small(media)
    audio, rate = decode_audio(media)
    rows = []
    for entry, take in zip(log, played):
        if entry["status"] != "recorded":
            continue
        m = match_take(times, frames, entry["start"], *stage.reference(take))
        sound = stage.sound(take)
        m.update(match_audio(audio, rate, entry["start"], *sound) if sound is not None else
                 {"audio_delay_s": None, "audio_corr": None})
        rows.append(dict(m, verb=entry["verb"], noun=entry["noun"], split=entry["split"],
                         played=" ".join(stage.actions[take.action]), shows_played=m["mad"] < 0.5 * m["mad_empty"],
                         has_sound=sound is not None, sounds_played=sound is not None and m["audio_corr"] > 0.5))

    def p50_max(key: str) -> list | None:
        v = [1000 * r[key] for r in rows if r[key] is not None]
        return [round(float(np.median(v)), 1), round(max(v), 1)] if v else None

    return {"takes": len(rows), "label_is_played_action": sum(f"{r['verb']} {r['noun']}" == r["played"] for r in rows),
            "frames_show_played_take": sum(r["shows_played"] for r in rows),
            "takes_with_sound": sum(r["has_sound"] for r in rows),
            "audio_has_played_sound": sum(r["sounds_played"] for r in rows),
            "camera_delay_ms_p50_max": p50_max("delay_s"), "mic_delay_ms_p50_max": p50_max("audio_delay_s"),
            "mad_p50": float(np.median([r["mad"] for r in rows])) if rows else None,
            "mad_empty_p50": float(np.median([r["mad_empty"] for r in rows])) if rows else None, "rows": rows}
