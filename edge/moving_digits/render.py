"""One MovingDigits-AV clip: a digit on a card moved by a verb, seen by a head-mounted camera that
drifts and jitters, with image nuisances, and the digit spoken over background noise.

A clip is *planned* first (every random choice drawn from the caller's rng), then any frame is rendered
from the plan alone: training renders only the frames it samples, and a session shares one scene (surface,
camera path, lighting, noise floor) across its clips. Frame i of a clip shows the instant
(i - lead_in_frames) / fps seconds after the clip start; audio sample j shows (j - lead_in_samples) / rate.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.errors import ConfigError
from edge.moving_digits.config import NuisanceLevels
from edge.moving_digits.sources import DigitSources
from edge.preprocess import resample

# Bump when a change alters any rendered clip or session (pixels, audio, draws): caches of rendered items are keyed
# by it, and tests/test_moving_digits_golden.py pins each version's golden statistics.
RENDER_VERSION = 1

VERBS = ("hold", "push-left", "push-right", "lift", "lower", "rotate-cw", "rotate-ccw", "shake")
NOUNS = tuple(str(d) for d in range(10))
_TRAVEL = {"push-left": (-1.0, 0.0), "push-right": (1.0, 0.0), "lift": (0.0, -1.0), "lower": (0.0, 1.0)}
_BLUR_SUBFRAMES = 5          # renders averaged over the exposure for motion blur
CARD_PX = 64                # card texture side before warping
_SHAKE_HZ = (1.0, 1.6)       # below the 2 Hz Nyquist of 4 fps sampling: shake never aliases to stillness


def _waves(rng: np.random.Generator, n: int, amp: float, f_lo: float, f_hi: float) -> np.ndarray:
    """n random sinusoids as rows (amplitude, frequency Hz, phase)."""
    return np.stack([amp * rng.uniform(0.5, 1.0, n), rng.uniform(f_lo, f_hi, n), rng.uniform(0, 2 * np.pi, n)], 1)


def _eval(waves: np.ndarray, t: float) -> float:
    return float(np.sum(waves[:, 0] * np.sin(2 * np.pi * waves[:, 1] * t + waves[:, 2])))


def rotation(deg: float) -> np.ndarray:
    """2x2 rotation; positive degrees turn clockwise on screen (image y axis points down)."""
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def affine(linear: np.ndarray, offset) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = linear, offset
    return m


# ---------------------------------------------------------------- scene: surface, camera, light, noise floor


@dataclass
class Scene:
    texture: np.ndarray          # (size + 2 margin)^2 x 3 float32 surface; world (0, 0) = texture (margin, margin)
    margin: int
    size: int
    wander: np.ndarray           # (2, k, 3) camera offset waves for x and y, pixels
    roll: np.ndarray             # (k, 3) camera roll waves, degrees
    gain: np.ndarray             # (mid, amplitude, frequency, phase) of the brightness gain
    noise_std: float             # sensor noise, grey levels
    noise_rms: float             # audio noise floor
    noise_tilt: float            # 0 white .. 2 brown
    hum: float                   # mains hum share of the noise floor
    hum_hz: float
    seed: int
    _noise_tile: np.ndarray | None = field(default=None, repr=False)

    def camera(self, t: float) -> np.ndarray:
        """3x3 world -> view transform at scene time t (roll about the view centre, then offset)."""
        c = self.size / 2.0
        r = rotation(_eval(self.roll, t))
        off = np.array([_eval(self.wander[0], t), _eval(self.wander[1], t)])
        return affine(r, c - r @ np.array([c, c]) - off)

    def brightness(self, t: float) -> float:
        mid, amp, f, ph = self.gain
        return float(mid + amp * math.sin(2 * math.pi * f * t + ph))

    def background(self, cam: np.ndarray) -> np.ndarray:
        m = cam @ affine(np.eye(2), (-self.margin, -self.margin))
        return cv2.warpAffine(self.texture, m[:2], (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def finish(self, img: np.ndarray, t: float, stream_frame: int) -> np.ndarray:
        """Lighting and sensor noise -> uint8 RGB. The noise is a window of one pre-drawn noise tile at an
        offset hashed from the stream frame index: deterministic per frame and cheap."""
        img = img * self.brightness(t)
        if self.noise_std > 0:
            if self._noise_tile is None:
                tile = np.random.default_rng([self.seed, 0x5E05]).standard_normal((2 * self.size, 2 * self.size, 3),
                                                                                    dtype=np.float32)
                self._noise_tile = tile * np.float32(self.noise_std)
            h = zlib.crc32(np.array([self.seed, stream_frame], np.int64).tobytes())
            y, x = h % self.size, (h >> 12) % self.size
            img += self._noise_tile[y:y + self.size, x:x + self.size]
        return np.clip(img, 0, 255).astype(np.uint8)

    def audio_noise(self, n_samples: int, sample_rate: int) -> np.ndarray:
        """The scene's background sound from its start: coloured noise plus mains hum at noise_rms."""
        rng = np.random.default_rng([self.seed, 0xA0D10])
        n_fft = cv2.getOptimalDFTSize(n_samples)        # a 2^a 3^b 5^c length: fast FFT
        spec = np.fft.rfft(rng.standard_normal(n_fft, dtype=np.float32))
        freqs = np.maximum(np.fft.rfftfreq(n_fft, 1.0 / sample_rate), 20.0)
        x = np.fft.irfft(spec * (freqs / 1000.0) ** (-self.noise_tilt / 2), n=n_fft)[:n_samples]
        x /= max(float(np.sqrt(np.mean(x ** 2))), 1e-12)
        if self.hum > 0:
            t = np.arange(n_samples) / sample_rate
            hum = sum(np.sin(2 * np.pi * self.hum_hz * h * t) / h for h in (1, 2, 3))
            x = (1 - self.hum) * x + self.hum * hum / np.sqrt(np.mean(hum ** 2))
        return (x * (self.noise_rms / max(float(np.sqrt(np.mean(x ** 2))), 1e-12))).astype(np.float32)


def _surface(rng: np.random.Generator, side: int) -> np.ndarray:
    """A textured table-like surface with a few objects: enough texture for flow to see ego-motion."""
    base = rng.uniform(60, 190, 3).astype(np.float32)
    low = cv2.resize(rng.normal(0, 28, (6, 6, 3)).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 20, (side // 6, side // 6)).astype(np.float32), (side, side),
                     interpolation=cv2.INTER_CUBIC)
    tex = base + low + mid[..., None] + 5 * rng.standard_normal((side, side, 1), dtype=np.float32)
    for _ in range(int(rng.integers(3, 8))):
        color = tuple(float(v) for v in rng.uniform(20, 235, 3))
        p = tuple(int(v) for v in rng.integers(0, side, 2))
        kind = rng.integers(3)
        if kind == 0:
            q = tuple(int(v) for v in rng.integers(0, side, 2))
            cv2.line(tex, p, q, color, int(rng.integers(2, 7)), cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(tex, p, int(rng.integers(5, side // 6)), color, -1, cv2.LINE_AA)
        else:
            q = tuple(int(v) for v in np.asarray(p) + rng.integers(8, side // 4, 2))
            cv2.rectangle(tex, p, q, color, -1)
    return np.clip(tex, 0, 255)


def make_scene(rng: np.random.Generator, levels: NuisanceLevels, size: int = 128) -> Scene:
    """A surface seen by a head-mounted camera: slow wander + fast jitter + roll, lighting, noise floor."""
    margin = size // 4 + int(2 * levels.ego_drift_px)
    wander = np.stack([np.concatenate([_waves(rng, 1, levels.ego_drift_px, 0.05, 0.2),
                                       _waves(rng, 1, levels.ego_drift_px / 2, 0.2, 0.6),
                                       _waves(rng, 2, levels.ego_jitter_px, 2.0, 7.0)]) for _ in range(2)])
    lo, hi = levels.brightness
    mid = rng.uniform(lo, hi)
    gain = np.array([mid, rng.uniform(0, min(mid - lo, hi - mid) + 1e-9), rng.uniform(0.05, 0.3),
                     rng.uniform(0, 2 * np.pi)])
    return Scene(texture=_surface(rng, size + 2 * margin), margin=margin, size=size, wander=wander,
                 roll=_waves(rng, 2, levels.ego_roll_deg, 0.1, 0.5), gain=gain,
                 noise_std=float(rng.uniform(0, levels.noise_std)),
                 noise_rms=float(rng.uniform(*levels.noise_rms)), noise_tilt=float(rng.uniform(0, 2)),
                 hum=float(rng.uniform(0, 0.3)) if rng.random() < 0.3 else 0.0,
                 hum_hz=float(rng.choice([50.0, 60.0])), seed=int(rng.integers(2 ** 31)))


# ---------------------------------------------------------------- the card and the hand


@dataclass
class Card:
    rgba: np.ndarray            # premultiplied RGBA float32 card texture with a transparent 1 px border
    start: np.ndarray           # world centre at the clip start, pixels
    angle0: float               # degrees, clockwise
    side: float                 # pixels
    travel: np.ndarray          # displacement over the motion (push / lift / lower)
    turn: float                 # degrees over the motion (rotate)
    shake_axis: np.ndarray
    shake_amp: float
    shake_hz: float
    t0: float                   # motion start / end, seconds after the clip start
    t1: float
    tremor: np.ndarray          # (2, k, 3) hand tremor waves

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """World centre and angle at clip time t (smooth-step travel and turn, enveloped shake)."""
        u = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        e = u * u * (3 - 2 * u)
        env = min(max(min(t - self.t0, self.t1 - t) / 0.15, 0.0), 1.0)
        shake = self.shake_amp * env * math.sin(2 * math.pi * self.shake_hz * (t - self.t0))
        centre = self.start + self.travel * e + self.shake_axis * shake + \
            np.array([_eval(self.tremor[0], t), _eval(self.tremor[1], t)])
        return centre, self.angle0 + self.turn * e

    def to_world(self, t: float) -> np.ndarray:
        centre, angle = self.pose(t)
        k = self.side / CARD_PX
        c = (self.rgba.shape[0] - 1) / 2.0
        lin = rotation(angle) * k
        return affine(lin, centre - lin @ np.array([c, c]))


def _card_texture(rng: np.random.Generator, digit_img: np.ndarray) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 70), rng.uniform(185, 250)]]], np.uint8)
    paper = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    ink = rng.uniform(0, 90, 3).astype(np.float32)
    n = int(CARD_PX * 0.72)
    w = np.zeros((CARD_PX, CARD_PX), np.float32)
    o = (CARD_PX - n) // 2
    w[o:o + n, o:o + n] = np.clip(cv2.resize(digit_img, (n, n), interpolation=cv2.INTER_CUBIC) / 255.0, 0, 1)
    rgb = paper * (1 - w[..., None]) + ink * w[..., None]
    cv2.rectangle(rgb, (0, 0), (CARD_PX - 1, CARD_PX - 1), tuple(float(v) for v in paper * 0.6), 1)
    rgba = np.zeros((CARD_PX + 2, CARD_PX + 2, 4), np.float32)
    rgba[1:-1, 1:-1, :3], rgba[1:-1, 1:-1, 3] = rgb, 1.0
    return rgba


def _make_card(rng: np.random.Generator, verb: str, digit_img: np.ndarray, levels: NuisanceLevels,
               size: int, duration_s: float) -> Card:
    side = rng.uniform(*levels.card_scale) * size
    amp = rng.uniform(*levels.motion_amplitude)
    lo, hi = 0.5 * side + 0.05 * size, size - 0.5 * side - 0.05 * size
    start = rng.uniform(lo, hi, 2)
    travel, turn, shake_amp = np.zeros(2), 0.0, 0.0
    if verb in _TRAVEL:
        direction = np.array(_TRAVEL[verb])
        dist = min(amp * rng.uniform(0.30, 0.45) * size, hi - lo)
        axis = int(direction[1] != 0)
        sign = direction[axis]
        start[axis] = rng.uniform(lo + (dist if sign < 0 else 0), hi - (dist if sign > 0 else 0))
        travel = direction * dist
    elif verb in ("rotate-cw", "rotate-ccw"):
        turn = amp * rng.uniform(70, 120) * (1 if verb == "rotate-cw" else -1)
    elif verb == "shake":
        shake_amp = amp * rng.uniform(0.06, 0.10) * size
    axis_angle = rng.uniform(0, np.pi)
    t0 = rng.uniform(0, 0.25) * duration_s
    return Card(rgba=_card_texture(rng, digit_img), start=start, angle0=rng.uniform(-15, 15), side=side,
                travel=travel, turn=turn, shake_axis=np.array([math.cos(axis_angle), math.sin(axis_angle)]),
                shake_amp=shake_amp, shake_hz=rng.uniform(*_SHAKE_HZ), t0=t0,
                t1=min(duration_s, t0 + rng.uniform(0.6, 0.8) * duration_s),
                tremor=np.stack([_waves(rng, 2, levels.tremor_px, 1.0, 4.0) for _ in range(2)]))


@dataclass
class Occluder:
    """A hand-like blob (palm + four fingers) holding the card from one side for part of the clip."""

    offset: np.ndarray          # palm centre in card-side units, card frame
    size: float                 # relative to the card side
    color: tuple
    t_on: float
    t_off: float

    def draw(self, img: np.ndarray, cam: np.ndarray, card_world: np.ndarray, card_angle: float, side: float,
             t: float) -> None:
        if not self.t_on <= t <= self.t_off:
            return
        rot = rotation(card_angle)
        palm_w = card_world + rot @ (self.offset * side)
        palm = (cam @ np.append(palm_w, 1.0))[:2]
        inward = -rot @ self.offset / max(np.linalg.norm(self.offset), 1e-9)
        inward = cam[:2, :2] @ inward
        across = np.array([-inward[1], inward[0]])
        s = self.size * side
        ang = math.degrees(math.atan2(inward[1], inward[0]))
        sh = 16  # 4 fractional bits for sub-pixel drawing

        def blob(centre, ax_a, ax_b):
            cv2.ellipse(img, tuple(int(round(v * sh)) for v in centre), (int(ax_a * sh), int(ax_b * sh)),
                        ang, 0, 360, self.color, -1, cv2.LINE_AA, 4)

        blob(palm, 0.45 * s, 0.35 * s)
        for k in range(4):
            blob(palm + inward * 0.55 * s + across * (k - 1.5) * 0.2 * s, 0.3 * s, 0.07 * s)


# ---------------------------------------------------------------- clip plan and rendering


@dataclass
class ClipPlan:
    scene: Scene
    card: Card | None
    occluder: Occluder | None
    verb: int
    noun: int
    fps: int
    lead_in_frames: int
    n_frames: int
    sample_rate: int
    lead_in_samples: int
    n_samples: int
    frame_base: int             # stream index of clip frame 0 (0 for a stand-alone clip)
    exposure_s: float           # motion-blur exposure, 0 = sharp
    freeze_src: np.ndarray      # frame i shows the state of frame freeze_src[i] (frozen / dropped frames)
    speech: np.ndarray          # the spoken digit at its final level
    speech_at: int              # its first sample in the clip's audio


@dataclass
class Clip:
    frames: np.ndarray          # [N, size, size, 3] uint8 RGB, lead-in frames first
    audio: np.ndarray           # float32 mono at sample_rate, from the first lead-in frame's instant
    fps: int
    sample_rate: int
    lead_in_frames: int
    verb: int
    noun: int
    lead_in_samples: int


def _check(verb: int, noun: int, duration_s: float, lead_in_s: float, fps: int, size: int, sample_rate: int) -> None:
    if not 0 <= verb < len(VERBS) or not 0 <= noun < len(NOUNS):
        raise ConfigError(f"verb must be in 0..{len(VERBS) - 1} and noun in 0..{len(NOUNS) - 1}, got {verb}, {noun}.")
    if duration_s <= 0 or lead_in_s < 0 or fps <= 0 or size < 32 or sample_rate <= 0:
        raise ConfigError(f"a clip needs duration_s > 0, lead_in_s >= 0, fps > 0, size >= 32 and sample_rate > 0, "
                          f"got {duration_s}, {lead_in_s}, {fps}, {size}, {sample_rate}.")


def plan_clip(sources: DigitSources, rng: np.random.Generator, verb: int, noun: int, levels: NuisanceLevels,
              duration_s: float = 2.0, lead_in_s: float = 0.25, fps: int = 30, size: int = 128,
              sample_rate: int = 16000, scene: Scene | None = None, frame_base: int = 0) -> ClipPlan:
    """Draw every random choice of one clip; `scene` (a session's) is shared, else a new one is drawn."""
    _check(verb, noun, duration_s, lead_in_s, fps, size, sample_rate)
    scene = scene if scene is not None else make_scene(rng, levels, size)
    lead = int(math.ceil(lead_in_s * fps - 1e-9))
    n_frames = lead + int(round(duration_s * fps))
    lead_samples = int(round(lead / fps * sample_rate))
    n_samples = lead_samples + int(round(duration_s * sample_rate))
    image, sound = sources.pick(rng, noun)
    card = _make_card(rng, VERBS[verb], image, levels, size, duration_s)
    occluder = None
    if rng.random() < levels.occluder_prob:
        a = rng.uniform(0, 2 * np.pi)
        t_on = rng.uniform(-lead / fps, 0.7 * duration_s)
        occluder = Occluder(offset=0.5 * np.array([math.cos(a), math.sin(a)]), size=rng.uniform(*levels.occluder_size),
                            color=tuple(float(v) for v in rng.uniform([150, 90, 60], [240, 180, 150])),
                            t_on=t_on, t_off=t_on + rng.uniform(0.6, 2.0))
    exposure = rng.uniform(0.3, 1.0) * levels.blur_exposure_s if rng.random() < levels.blur_prob else 0.0
    freeze = np.arange(n_frames)
    if levels.freeze_max_frames > 0 and rng.random() < levels.freeze_prob:
        first = int(rng.integers(1, n_frames))
        freeze[first:first + int(rng.integers(1, levels.freeze_max_frames + 1))] = first - 1
    rate = rng.uniform(*levels.speech_rate)         # read as if recorded at rate x its rate: tempo and pitch
    if sources.sample_rate != sample_rate or rate != 1.0:
        sound = resample(sound, int(round(sources.sample_rate * rate)), sample_rate)
    body = n_samples - lead_samples
    if sound.size > body:
        cut = int(rng.integers(0, sound.size - body + 1))
        sound = sound[cut:cut + body]
    at = lead_samples + int(rng.integers(0, body - sound.size + 1))
    rms = max(float(np.sqrt(np.mean(sound.astype(np.float64) ** 2))), 1e-9)
    gain = scene.noise_rms * 10 ** (rng.uniform(*levels.snr_db) / 20) / rms
    return ClipPlan(scene=scene, card=card, occluder=occluder, verb=verb, noun=noun, fps=fps, lead_in_frames=lead,
                    n_frames=n_frames, sample_rate=sample_rate, lead_in_samples=lead_samples, n_samples=n_samples,
                    frame_base=frame_base, exposure_s=float(exposure), freeze_src=freeze,
                    speech=(sound * gain).astype(np.float32), speech_at=at)


def _compose(plan: ClipPlan, t_clip: float, t_scene: float) -> np.ndarray:
    scene = plan.scene
    cam = scene.camera(t_scene)
    img = scene.background(cam)
    card = plan.card
    m = cam @ card.to_world(t_clip)
    warped = cv2.warpAffine(card.rgba, m[:2], (scene.size, scene.size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    img = img * (1.0 - warped[..., 3:]) + warped[..., :3]      # the card texture is premultiplied
    if plan.occluder is not None:
        centre, angle = card.pose(t_clip)
        plan.occluder.draw(img, cam, centre, angle, card.side, t_clip)
    return img


def render_frames(plan: ClipPlan, indices) -> np.ndarray:
    """Frames `indices` (clip frame numbers, lead-in included) of a planned clip: [n, size, size, 3] uint8."""
    size = plan.scene.size
    out = np.empty((len(indices), size, size, 3), np.uint8)
    for k, i in enumerate(indices):
        src = int(plan.freeze_src[i])
        t_clip = (src - plan.lead_in_frames) / plan.fps
        t_scene = (plan.frame_base + src) / plan.fps
        if plan.exposure_s > 0:
            offsets = np.linspace(-plan.exposure_s, 0.0, _BLUR_SUBFRAMES)
            img = sum(_compose(plan, t_clip + d, t_scene + d) for d in offsets) / _BLUR_SUBFRAMES
        else:
            img = _compose(plan, t_clip, t_scene)
        out[k] = plan.scene.finish(img, t_scene, plan.frame_base + src)
    return out


def render_idle(scene: Scene, first_frame: int, n_frames: int, fps: int) -> np.ndarray:
    """Stream frames first_frame .. first_frame + n_frames - 1 of the scene with no card (idle gaps)."""
    out = np.empty((n_frames, scene.size, scene.size, 3), np.uint8)
    for k in range(n_frames):
        t = (first_frame + k) / fps
        out[k] = scene.finish(scene.background(scene.camera(t)), t, first_frame + k)
    return out


def render_audio(plan: ClipPlan, noise: np.ndarray | None = None) -> np.ndarray:
    """The clip's audio: its speech over `noise` (the scene's noise floor when None), clipped to [-1, 1]."""
    out = plan.scene.audio_noise(plan.n_samples, plan.sample_rate) if noise is None else noise.astype(np.float32)
    out[plan.speech_at:plan.speech_at + plan.speech.size] += plan.speech
    return np.clip(out, -1.0, 1.0)


def render_clip(sources: DigitSources, rng: np.random.Generator, verb: int, noun: int, levels: NuisanceLevels,
                duration_s: float = 2.0, lead_in_s: float = 0.25, fps: int = 30, size: int = 128,
                sample_rate: int = 16000) -> Clip:
    """A whole clip: every frame (lead-in first) and its audio."""
    plan = plan_clip(sources, rng, verb, noun, levels, duration_s, lead_in_s, fps, size, sample_rate)
    return Clip(frames=render_frames(plan, range(plan.n_frames)), audio=render_audio(plan), fps=fps,
                sample_rate=sample_rate, lead_in_frames=plan.lead_in_frames, verb=verb, noun=noun,
                lead_in_samples=plan.lead_in_samples)
