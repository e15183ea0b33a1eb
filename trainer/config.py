"""The trainer's settings. The dataclasses below ARE the defaults (the full MovingDigits-AV benchmark, and
teacher / student / finetune on any --dataset); a YAML file under assets/configs/ only overrides them
(trainer.yaml: nothing by default; trainer_smoke.yaml: the tiny smoke run), then `--set section.key=value`.
A shipped YAML never restates a default (tests/test_trainer_config.py), so a reader never has to ask which of
two places is the truth."""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from edge.errors import ConfigError
from edge.modalities import MODALITIES
from edge.preprocess.config import _from_mapping  # the project's one strict dataclass-from-mapping loader

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "assets" / "configs"


def cache_root() -> Path:
    """Where rendered clips are cached (under `moving_digits/`): $KARMMA_CACHE, else ~/.cache/karmma (the one
    cache variable; never inside the repository). `--cache` overrides it per command."""
    return Path(os.environ.get("KARMMA_CACHE", Path.home() / ".cache" / "karmma"))


@dataclass(frozen=True)
class DataConfig:
    """Which MovingDigits-AV clips are rendered (once, then cached) for training and evaluation."""

    n_train: int = 4000            # half of them stream windows (stream.fraction): as many whole-action clips as before
    n_val: int = 500
    n_test: int = 1000
    seed: int = 0
    workers: int = 2               # DataLoader processes rendering clips
    # nuisance levels over moving_digits.yaml's, chosen on val (docs/RESULTS.md): legible digits at 64 px, audible
    # speech (tune them on --eval-split val, never on test)
    levels: dict = field(default_factory=lambda: {"card_scale": [0.5, 0.65], "snr_db": [5.0, 25.0]})
    # train split only: imitate what the live loop feeds (trainer.data.moving_digits.StreamWindows fields)
    stream: dict = field(default_factory=lambda: {
        "fraction": 0.5,                    # windows at random offsets across action boundaries and idle gaps, soft targets
        "gap_s": [0.2, 2.5],
        "flow_scales": [1.0, 0.5, 0.25],    # the shedder's flow resolutions
        "flow_scale_probs": [0.6, 0.2, 0.2],
        "warmup_prob": 0.15,                # per modality: a token ring refilling after a reset
        "fault_prob": 0.1})                 # a frozen / black last frame, or audio just gone silent


@dataclass(frozen=True)
class TeacherConfig:
    """Stage 1: per-modality extractors (spec per modality), pre-trained and frozen, + a fusion transformer on their
    cached tokens; optionally then both trained together on whole samples (`end_to_end_epochs`)."""

    extractors: dict = field(default_factory=lambda: {"V": "conv", "F": "conv", "A": "conv"})
    widths: tuple = (32, 64, 128, 192)   # conv extractors: channels of the stride-2 stages (~55 MFLOPs per frame:
    #                                      the teacher ~7x the student per window)
    token_dim: int = 128
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ff: int = 256
    dropout: float = 0.1
    pretrain_epochs: int = 12
    pretrain_positions: int = 3          # frames / windows per sample per pre-training epoch (one per pass)
    pretrain_lr: float = 0.004
    fusion_epochs: int = 15
    fusion_lr: float = 0.001
    end_to_end_epochs: int = 0           # then extractors + fusion trained together on whole samples (0 = frozen;
    #                                      val: 3 lifts the teacher's V verb 83 -> 91, KARMMA_S gained nothing)
    end_to_end_lr: float = 0.001
    audio_mask: tuple = (0, 0)           # end-to-end stage: SpecAugment, 2 bands of up to this many mel bins and
    #                                      2 spans of up to this many frames per window (trainer.augment); 0 = off
    #                                      (val [10, 12]: teacher A noun 69.0 -> 72.8, the students level)
    p_drop: float = 0.3                  # teacher-side modality dropout (0 = off)
    infonce: bool = False                # InfoNCE alignment of per-modality token averages
    infonce_weight: float = 0.1
    infonce_tau: float = 0.1
    token_views: int = 2                 # real datasets: TSN draws of the train split whose tokens are cached

    def __post_init__(self) -> None:         # a bad value fails when the config loads, not after the frozen stages
        if self.end_to_end_epochs < 0:
            raise ConfigError(f"teacher.end_to_end_epochs must be >= 0, got {self.end_to_end_epochs}.")
        if not (math.isfinite(self.end_to_end_lr) and self.end_to_end_lr > 0):
            raise ConfigError(f"teacher.end_to_end_lr must be a finite number > 0, got {self.end_to_end_lr}.")
        mask = self.audio_mask
        if len(mask) != 2 or any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in mask):
            raise ConfigError(f"teacher.audio_mask must be two whole widths >= 0 [mel bins, frames], got {list(mask)}.")
        if any(mask) and not self.end_to_end_epochs:
            raise ConfigError("teacher.audio_mask applies only in the end-to-end stage; set teacher.end_to_end_epochs "
                              "> 0 or leave it [0, 0].")


@dataclass(frozen=True)
class StudentConfig:
    """Stage 2: the one student architecture and how its three trainings run."""

    # trainer.models.ModelConfig fields (missing is set per training); val V+F+A: video 16-32-64-96 91.6,
    # 24-48-96-128 94.8 (at the 2x latency limit), this 1.48x; audio wider than V / F: A alone must carry the noun
    # when the camera is off
    model: dict = field(default_factory=lambda: {"video_widths": [20, 40, 80, 128], "flow_widths": [12, 24, 48, 64],
                                                 "audio_widths": [16, 32, 64, 96]})
    pretrain_epochs: int = 10            # unimodal warm start of the encoders (shared by the three trainings)
    pretrain_positions: int = 3          # as the teacher's: passes per warm-start epoch
    pretrain_lr: float = 0.004
    epochs: int = 6
    lr: float = 0.002
    weight_decay: float = 0.01
    p_drop: float = 0.4                  # modality dropout of Baseline w/ delta and KARMMA_S
    alpha: float = 0.8                   # KARMMA_S: alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE (val:
    #                                      0.5 -> 0.8 raised KARMMA_S on every subset with V or F)
    temperature: float = 2.0
    kd_all: float = 0.0                  # KARMMA_S: share of the KD term toward the teacher on ALL the sample's
    #                                      modalities instead of the student's subset (0 = the subset only; val
    #                                      0.5 / 1.0: no gain)
    # KARMMA_S: {modality: weight} of token KD, 1 - cos(linear(student token), teacher token) (trainer.students);
    # val: V+A +2.8, V+F +1.6
    token_kd: dict = field(default_factory=lambda: {"V": 1.0})

    def __post_init__(self) -> None:
        token_kd_weights(self.token_kd)      # a bad key or weight fails when the config loads, not hours later
        if not 0 <= self.kd_all <= 1:
            raise ConfigError(f"student.kd_all must be a share between 0 and 1, got {self.kd_all!r}.")


def token_kd_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """`student.token_kd` checked (modality names, finite weights >= 0), zero weights dropped."""
    out = {}
    for m, w in weights.items():
        if m not in MODALITIES:
            raise ConfigError(f"student.token_kd names {m!r}; use modalities {', '.join(MODALITIES)}.")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"student.token_kd.{m} must be a finite weight >= 0, got {w!r}.")
        if w > 0:
            out[m] = float(w)
    return out


@dataclass(frozen=True)
class FinetuneConfig:
    """`python -m trainer finetune` (and `crossval`'s learner): a bundle's student taught a new label set from a
    few takes per action (new last layers of the verb / noun heads; everything else starts from the bundle), under
    modality dropout. Defaults chosen by cross-validation on real footage (docs/OWN_ACTIONS.md)."""

    head_epochs: int = 3                 # first the new head layers alone (everything else frozen) ...
    head_lr: float = 0.01
    epochs: int = 20                     # ... then every weight the `train` setting leaves trainable
    lr: float = 0.001
    train: str = "all"                   # second phase: "all" weights, or "fusion" (the bundle's encoders kept)
    weight_decay: float = 0.01
    p_drop: float = 0.4                  # modality dropout, as the student's (0 would forget missing sensors)
    batch_size: int = 8
    freeze_bn: bool = False              # True: BatchNorm keeps the bundle's running statistics
    windows_per_class: int = 16          # 2 s windows per action and epoch, each at a random offset of a random take
    views: int = 5                       # evenly spaced windows per scored take, their predictions averaged
    hflip: bool = True                   # mirror half the windows: turn off when two actions are mirror images
    brightness: float = 20.0             # per-window brightness shift drawn from +-brightness grey levels (0 = off)
    contrast: float = 0.2                # per-window contrast gain drawn from 1 +- contrast (0 = off)
    speed: float = 0.2                   # per-window playback rate drawn from 1 +- speed (0 = off)
    backbone: str = ""                   # "torchvision:<arch>:<state-dict path>": a new video encoder (train: all)
    members: int = 1                     # copies trained from the same start and weight-averaged (a model soup)


@dataclass(frozen=True)
class EvalConfig:
    drop_ps: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    drop_repeats: int = 5                # independent mask draws per clip and p


@dataclass(frozen=True)
class TrainerConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    batch_size: int = 32                 # global: a multiple of the process count under torchrun

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "teacher": TeacherConfig, "student": StudentConfig, "eval": EvalConfig,
             "finetune": FinetuneConfig}


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> TrainerConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    data = dict(data)
    for name, cls in _SECTIONS.items():
        if name in data:
            data[name] = _from_mapping(cls, data[name], f"{where}.{name}")
    return _from_mapping(TrainerConfig, data, where)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainerConfig:
    """The defaults, overridden by a YAML config (default assets/configs/trainer.yaml) and then by
    `section.key=value` overrides. A YAML mapping replaces a dict setting whole (`levels: {}` clears it); an
    override sets one key of it and keeps the others (the YAML's, else the defaults')."""
    path = Path(path) if path else CONFIG_DIR / "trainer.yaml"
    if not path.is_file():
        raise ConfigError(f"trainer config {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"trainer config {path} is not valid YAML ({type(exc).__name__}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"trainer config {path} must be a YAML mapping.")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value.")
        node, default = raw, dataclasses.asdict(TrainerConfig())
        *parents, leaf = key.split(".")
        for part in parents:
            default = default.get(part) if isinstance(default, dict) else None
            if part not in node:   # a dict setting the YAML leaves alone starts from its default, not empty
                node[part] = copy.deepcopy(default) if isinstance(default, dict) else {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section.")
        node[leaf] = yaml.safe_load(value)
    return config_from_dict(raw, str(path))
