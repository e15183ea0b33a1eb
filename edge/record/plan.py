"""A recording plan (YAML): which actions to record, how many takes of each, and the split of every take.

    take_seconds: 4            # length of a take (default 4)
    countdown: 3               # seconds counted down before each take (default 3)
    pause: 1                   # seconds between takes (default 1)
    splits: {train: 8, val: 1, test: 1}   # default share of each split per action (default: all train)
    actions:
      - {verb: open, noun: fridge, takes: 10}
      - {verb: close, noun: fridge, takes: 5, seconds: 3, splits: {train: 4, test: 1}}
      - {verb: stir, noun: pot, splits: [train, train, val]}   # one split per take (takes = its length)
      - {verb: take, noun: cup, takes: 4, prompt: "pick up the cup"}  # what the prompt says (default "take cup")

Every unknown key, missing name, non-positive number or unknown split is one ConfigError sentence.
Take k (0-based) of an action gets its split deterministically: a list names it; weights give it to the
split furthest behind its share after k takes (8/1/1 over 10 takes: the 4th take is val, the 7th test), so a
plan stopped half-way still has its splits in proportion.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from edge.yamlfile import read_yaml

SPLITS = ("train", "val", "test")
TOP_KEYS = ("take_seconds", "countdown", "pause", "splits", "actions")
ACTION_KEYS = ("verb", "noun", "takes", "seconds", "splits", "prompt")


@dataclass(frozen=True)
class Action:
    verb: str
    noun: str
    takes: int
    seconds: float
    splits: tuple[str, ...]  # one per take
    prompt: str

    @property
    def label(self) -> str:
        return f"{self.verb} {self.noun}"


@dataclass
class Take:
    """One take of an action as the session records it (a guided take, or a segment marked in free mode)."""

    action: Action
    index: int             # 0-based take number within the action
    split: str
    start: float = 0.0     # session time
    end: float = 0.0
    attempt: int = 1


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    countdown: float
    pause: float
    path: str = "plan"

    @property
    def total_takes(self) -> int:
        return sum(a.takes for a in self.actions)


def assign_splits(weights: dict[str, float], takes: int) -> tuple[str, ...]:
    """Take k -> the split whose count lags its share of k + 1 takes the most (ties: train, val, test order)."""
    total = sum(weights.values())
    counts = {s: 0 for s in weights}
    out = []
    for k in range(takes):
        lag = {s: weights[s] * (k + 1) / total - counts[s] for s in weights}
        best = max(weights, key=lambda s: (round(lag[s], 9), -SPLITS.index(s)))
        counts[best] += 1
        out.append(best)
    return tuple(out)


def _number(where: str, key: str, value: Any, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number of seconds, got {value!r}.")
    if value < minimum or (strict and value == minimum):
        bound = f"more than {minimum:g}" if strict else f"at least {minimum:g}"
        raise ConfigError(f"{where}: {key} must be {bound}, got {value!r}.")
    return float(value)


def _weights(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}: splits must map split names to shares (e.g. {{train: 8, val: 1, test: 1}}) "
                          f"or list one split per take, got {value!r}.")
    unknown = [k for k in value if k not in SPLITS]
    if unknown:
        raise ConfigError(f"{where}: splits has unknown split(s) {unknown}; use {list(SPLITS)}.")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{where}: the share of split {k} must be a number >= 0, got {v!r}.")
    if sum(value.values()) <= 0:
        raise ConfigError(f"{where}: splits gives every split a share of 0.")
    return {k: float(v) for k, v in value.items() if v > 0}


def _name(where: str, key: str, value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(f"{where} has no {key}; every action needs a verb and a noun.")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be a name, got {value!r}.")
    name = str(value).strip()
    if any(c in name for c in ",\n\r\""):
        raise ConfigError(f"{where}: {key} {name!r} may not contain commas, quotes or line breaks.")
    return name


def parse_plan(data: Any, path: str = "plan") -> Plan:
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with an actions list, got {type(data).__name__}.")
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path} has unknown key(s) {unknown}; known keys are {list(TOP_KEYS)}.")
    seconds = _number(path, "take_seconds", data.get("take_seconds", 4), minimum=0, strict=True)
    countdown = _number(path, "countdown", data.get("countdown", 3), minimum=0, strict=False)
    pause = _number(path, "pause", data.get("pause", 1), minimum=0, strict=False)
    default_weights = _weights(path, data["splits"]) if "splits" in data else {"train": 1.0}
    actions = data.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ConfigError(f"{path} needs a non-empty actions list (e.g. actions: [{{verb: open, noun: fridge, "
                          "takes: 10}]).")
    out: list[Action] = []
    seen: set[tuple[str, str]] = set()
    for i, a in enumerate(actions, 1):
        where = f"{path} action {i}"
        if not isinstance(a, dict):
            raise ConfigError(f"{where} must be a mapping with verb, noun and takes, got {a!r}.")
        unknown = [k for k in a if k not in ACTION_KEYS]
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {unknown}; known keys are {list(ACTION_KEYS)}.")
        verb, noun = _name(where, "verb", a.get("verb")), _name(where, "noun", a.get("noun"))
        where = f"{path} action {i} ({verb} {noun})"
        if (verb, noun) in seen:
            raise ConfigError(f"{where} is listed twice; give it once with all its takes.")
        seen.add((verb, noun))
        splits_value = a.get("splits")
        takes = a.get("takes")
        if takes is not None and (isinstance(takes, bool) or not isinstance(takes, int) or takes < 1):
            raise ConfigError(f"{where}: takes must be a whole number of at least 1, got {takes!r}.")
        if isinstance(splits_value, list):
            bad = [s for s in splits_value if s not in SPLITS]
            if bad or not splits_value:
                raise ConfigError(f"{where}: a splits list names one split per take from {list(SPLITS)}, "
                                  f"got {splits_value!r}.")
            if takes is not None and takes != len(splits_value):
                raise ConfigError(f"{where}: takes is {takes} but its splits list names {len(splits_value)}.")
            splits = tuple(splits_value)
        else:
            if takes is None:
                raise ConfigError(f"{where} needs takes (how many times to record it).")
            weights = _weights(where, splits_value) if splits_value is not None else default_weights
            splits = assign_splits(weights, takes)
        take_s = _number(where, "seconds", a["seconds"], minimum=0, strict=True) if "seconds" in a else seconds
        prompt = a.get("prompt", f"{verb} {noun}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{where}: prompt must be a non-empty text, got {prompt!r}.")
        out.append(Action(verb, noun, len(splits), take_s, splits, prompt.strip()))
    return Plan(tuple(out), countdown, pause, path)


def load_plan(path: str | Path) -> Plan:
    return parse_plan(read_yaml(Path(path), "plan"), str(path))
