"""One truth for the trainer's defaults: the dataclasses in trainer/config.py are the defaults, and a shipped YAML
only overrides them (it never restates a default, so a reader never has to ask which of two places wins)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import pytest
import yaml

from trainer.config import CONFIG_DIR, TrainerConfig, load_config


def redundant_settings(raw: Mapping[str, Any], default: Any = None, where: str = "") -> list[str]:
    """The keys of a config mapping (as read from YAML) whose value equals the dataclass default: they restate the
    truth instead of overriding it. Values are compared as JSON (a YAML list equals a tuple default)."""
    default = TrainerConfig() if default is None else default
    out = []
    for key, value in raw.items():
        name = f"{where}{key}"
        if not hasattr(default, key):
            continue                         # an unknown key: config_from_dict names it
        current = getattr(default, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            out += redundant_settings(value, current, f"{name}.")
        elif json.dumps(value, sort_keys=True) == json.dumps(current, sort_keys=True):
            out.append(name)
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("trainer*.yaml")))
def test_a_shipped_trainer_yaml_sets_nothing_equal_to_its_default(name):
    raw = yaml.safe_load((CONFIG_DIR / name).read_text()) or {}
    assert redundant_settings(raw) == []
    load_config(CONFIG_DIR / name)                       # and it loads


def test_the_default_config_is_the_dataclasses():
    assert load_config() == TrainerConfig()


def test_a_restated_default_is_found_wherever_it_is():
    raw = {"batch_size": 32, "student": {"epochs": 6, "lr": 0.005, "token_kd": {"V": 1.0}},
           "teacher": {"widths": [32, 64, 128, 192]}, "data": {"levels": {"card_scale": [0.5, 0.65], "snr_db": [5.0, 25.0]}}}
    assert sorted(redundant_settings(raw)) == ["batch_size", "data.levels", "student.epochs", "student.token_kd",
                                               "teacher.widths"]
    assert redundant_settings({"student": {"lr": 0.005}, "data": {"levels": {}}}) == []


def test_an_override_sets_one_key_of_a_dict_setting_and_keeps_the_others():
    """`--set data.levels.snr_db=...` changes the SNR and keeps the default card scale (the YAML says nothing of
    levels); a YAML that sets `levels: {}` (the smoke run) has cleared them, and the override adds to that."""
    defaults = TrainerConfig()
    cfg = load_config(overrides=["data.levels.snr_db=[0, 10]", "student.token_kd.A=0.5", "student.model.dim=96"])
    assert cfg.data.levels == {**defaults.data.levels, "snr_db": [0, 10]}
    assert cfg.student.token_kd == {"V": 1.0, "A": 0.5}
    assert cfg.student.model == {**defaults.student.model, "dim": 96}
    smoke = load_config(CONFIG_DIR / "trainer_smoke.yaml", ["data.levels.snr_db=[0, 10]"])
    assert smoke.data.levels == {"snr_db": [0, 10]}
