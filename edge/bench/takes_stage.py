"""A stage that plays a folder of real takes (footage of real people) on the virtual camera and microphone, so
`python -m edge.bench own-actions --takes DIR` records, fine-tunes and recognizes them live as it does the
rendered own actions.

The folder is a recordings dataset (docs/OWN_ACTIONS.md, "Takes"): split files (CSV or JSONL) whose rows name a
media file (relative to the folder), an optional `start` / `end` in seconds, a `verb`, a `noun` and an optional
`group`. All rows are pooled; `hold_out` keeps some takes of each action (whole groups) for the live step only.

A played take fills `length_s` seconds: a take shorter than that loops (as a person repeats a jump), a longer one
is cut. Its sound plays where it has a track, over a faint noise floor, as a real microphone never gives digital
silence. Between takes the camera shows an empty grey picture with a camera's sensor noise (a perfectly still
picture would be a frozen camera to the runtime).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bench.stage import ClockedStage, Played
from edge.errors import EdgeError
from edge.live.media import read_audio, read_video
from edge.live.sources import NoAudioStream

NOISE_RMS = 0.002       # the microphone's noise floor (about -54 dBFS)
NOISE_LOOP_S = 30.0
IDLE_GREY = 128
IDLE_NOISE = 2.0        # the empty picture's sensor noise (grey levels): a real camera's picture is never still


@dataclass(frozen=True)
class TakeRow:
    """One row of a split file: a take of (verb, noun) in `media` from `start` to `end` seconds (None: the file's
    start or end); `group`: takes that belong together (one person, one session)."""

    media: Path
    start: float | None
    end: float | None
    verb: str
    noun: str
    group: str

    @property
    def action(self) -> tuple[str, str]:
        return self.verb, self.noun


@dataclass(frozen=True)
class RealClip:
    """A take on the stream: its frames (RGB, source size) at `fps`, its sound at the stage rate (None: no track),
    from stream frame `frame_base` for `n_frames` frames, looping every `loop_s` seconds."""

    row: TakeRow
    frames: list[np.ndarray]
    fps: float
    sound: np.ndarray | None
    frame_base: int
    n_frames: int

    @property
    def loop_s(self) -> float:
        return len(self.frames) / self.fps

    def frame_at(self, seconds: float) -> np.ndarray:
        return self.frames[int(seconds * self.fps + 1e-6) % len(self.frames)]


def _number(value: str | None, where: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise EdgeError(f"{where}: {value!r} is not a number of seconds.") from None
    if not np.isfinite(x) or x < 0:
        raise EdgeError(f"{where}: {value!r} is not a time in seconds (finite, at least 0).")
    return x


def read_takes(folder: Path) -> list[TakeRow]:
    """Every row of every split file (*.csv, *.jsonl) under `folder` (its recordings/ subfolder when it has one)."""
    root = folder / "recordings" if (folder / "recordings").is_dir() else folder
    if not root.is_dir():
        raise EdgeError(f"--takes {folder} is not a folder.")
    files = sorted(root.glob("*.csv")) + sorted(root.glob("*.jsonl"))
    rows = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgeError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc}).") from None
        try:
            records = ([json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl"
                       else list(csv.DictReader(text.splitlines())))
        except ValueError as exc:
            raise EdgeError(f"{path} is not a split file ({exc}).") from None
        for n, r in enumerate(records, start=2 if path.suffix == ".csv" else 1):
            where = f"{path.name} line {n}"
            if not isinstance(r, dict) or not all(str(r.get(k) or "").strip() for k in ("media", "verb", "noun")):
                raise EdgeError(f"{where}: a take needs media, verb and noun.")
            media = root / str(r["media"])
            if not media.is_file():
                raise EdgeError(f"{where}: media file {media} does not exist.")
            start, end = _number(r.get("start"), where), _number(r.get("end"), where)
            rows.append(TakeRow(media, start, end, str(r["verb"]).strip(), str(r["noun"]).strip(),
                                str(r.get("group") or "").strip() or f"{media}@{start}"))
    if not rows:
        raise EdgeError(f"--takes {root} has no takes (no split file with rows: media, verb, noun).")
    return rows


def actions_of(rows: list[TakeRow]) -> tuple[tuple[str, str], ...]:
    """The (verb, noun) pairs of the takes, sorted."""
    return tuple(sorted({r.action for r in rows}))


def hold_out(rows: list[TakeRow], per_action: int, seed: int) -> tuple[list[TakeRow], list[TakeRow]]:
    """(train, held out): per action, whole groups in a seeded order until `per_action` takes are held out; every
    action keeps at least one group for training."""
    rng = np.random.default_rng([seed, 0x7A4E])
    train, test = [], []
    for action in actions_of(rows):
        groups: dict[str, list[TakeRow]] = {}
        for r in rows:
            if r.action == action:
                groups.setdefault(r.group, []).append(r)
        order = [list(groups.values())[i] for i in rng.permutation(len(groups))]
        held = 0
        while held < per_action and len(order) > 1:
            group = order.pop()
            test += group
            held += len(group)
        if held < per_action:
            raise EdgeError(f"'{' '.join(action)}' has {len(groups)} take group(s); holding out {per_action} take(s) "
                            "would leave none to train on (lower --test or add takes).")
        train += [r for g in order for r in g]
    return train, test


def decode_take(row: TakeRow, length_s: float, rate: int) -> tuple[list[np.ndarray], float, np.ndarray | None]:
    """The take's frames (RGB) over at most `length_s` seconds from its start, their frame rate, and its sound at
    `rate` over the same span (None without an audio track)."""
    start = row.start or 0.0
    stop = min(start + length_s, row.end if row.end is not None else np.inf)
    frames, fps = read_video(row.media, start, stop)
    if fps is None:
        raise EdgeError(f"{row.media} has fewer than two video frames from {start:g} s on; it cannot be played as "
                        "a take.")
    try:
        sound = read_audio(row.media, rate)
    except NoAudioStream:
        return frames, fps, None
    return frames, fps, sound[int(start * rate):int(start * rate) + int(len(frames) / fps * rate)]


class TakesStage(ClockedStage):
    """Real takes on the stream, idle grey between them. `takes[split][action]`: the rows `play` cycles through."""

    def __init__(self, takes: dict[str, list[TakeRow]], actions: tuple[tuple[str, str], ...], length_s: float,
                 seed: int = 0, size: tuple[int, int] = (640, 480), fps: int = 30, rate: int = 16000,
                 quality: int = 85) -> None:
        super().__init__(size, fps, rate, quality)
        self.actions, self.length_s = actions, length_s
        self.takes = {split: {a: [r for r in rows if r.action == act] for a, act in enumerate(actions)}
                      for split, rows in takes.items()}
        self._next = {(split, a): 0 for split in self.takes for a in range(len(actions))}
        self.noise = (NOISE_RMS * np.random.default_rng([seed, 0x2015E]).standard_normal(int(NOISE_LOOP_S * rate))
                      ).astype(np.float32)
        self.idle = np.full((size[1] // 4, size[0] // 4, 3), IDLE_GREY, np.uint8)
        self._ready: tuple | None = None      # (split, action, row, decoded take): decoded during the countdown

    def picture(self, k: int) -> np.ndarray:
        clip = self._on_air(k)
        if clip is not None:
            return clip.frame_at((k - clip.frame_base) / self.fps)
        noise = np.random.default_rng([k, 0x1D1E]).normal(0.0, IDLE_NOISE, self.idle.shape)
        return np.clip(self.idle + noise, 0, 255).astype(np.uint8)

    def audio(self, first: int, n: int) -> np.ndarray:
        """The noise floor plus the sound of every take overlapping samples first .. first + n - 1 (looped with
        its picture)."""
        out = self.noise[(first + np.arange(n)) % self.noise.size].copy()
        with self.lock:
            clips = [c for c in self.clips if c.sound is not None and c.sound.size]
        for c in clips:
            s0 = int(round(c.frame_base / self.fps * self.rate))
            j = first + np.arange(n) - s0
            inside = (j >= 0) & (j < int(c.n_frames / self.fps * self.rate))
            loop = max(1, int(round(c.loop_s * self.rate)))
            k = j[inside] % loop
            ok = k < c.sound.size
            out[np.flatnonzero(inside)[ok]] += c.sound[k[ok]]
        return np.clip(out, -1.0, 1.0)

    def prepare(self, split: str, action: int) -> None:
        """Decode the next take of `action` in `split` (cycling through them) now, so it starts on time."""
        rows = self.takes.get(split, {}).get(action) or []
        if not rows:
            raise EdgeError(f"there is no {split} take of '{' '.join(self.actions[action])}' to play.")
        row = rows[self._next[split, action] % len(rows)]
        self._next[split, action] += 1
        self._ready = (split, action, row, decode_take(row, self.length_s, self.rate))

    def play(self, split: str, action: int) -> Played:
        """Show the prepared take of `action` in `split` (the next one, decoded now, if none is) from the next
        frame on."""
        if self._ready is None or self._ready[:2] != (split, action):
            self.prepare(split, action)
        _, _, row, (frames, fps, sound) = self._ready
        self._ready = None
        n_frames = int(round(self.length_s * self.fps))
        clip, shown = self._put_on_air(lambda k: RealClip(row, frames, fps, sound, k, n_frames))
        return Played(split, action, clip, shown, shown, shown + clip.n_frames / self.fps)

    def describe(self, played: Played) -> str | None:
        row = played.clip.row
        if row.start is None and row.end is None:
            return row.media.name
        return f"{row.media.name} from {row.start or 0:g} s" + ("" if row.end is None else f" to {row.end:g} s")

    def live_plays(self, action: int) -> int:
        """Every held-out take of `action` is played once live."""
        return len(self.takes.get("test", {}).get(action) or [])

    def reference(self, played: Played, step: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        clip = played.clip
        offsets = np.arange(0, clip.n_frames, step) / self.fps
        shown = np.stack([clip.frame_at(t) for t in offsets])
        return offsets, shown, np.broadcast_to(self.idle, (len(offsets), *self.idle.shape))

    def sound(self, played: Played) -> tuple[np.ndarray, int] | None:
        """The take's sound over its first loop, where it has a track and it is not near-silent."""
        s = played.clip.sound
        return (s, 0) if s is not None and s.size and float(np.sqrt(np.mean(s ** 2))) > 4 * NOISE_RMS else None
