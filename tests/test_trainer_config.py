"""One truth for the trainer's defaults: the dataclasses in trainer/config.py are the defaults, and a shipped YAML
only overrides them (it never restates a default, so a reader never has to ask which of two places wins)."""
from __future__ import annotations

import pytest
import yaml

from trainer.config import CONFIG_DIR, TrainerConfig, load_config, redundant_settings


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("trainer*.yaml")))
def test_a_shipped_trainer_yaml_sets_nothing_equal_to_its_default(name):
    raw = yaml.safe_load((CONFIG_DIR / name).read_text()) or {}
    assert redundant_settings(raw) == []
    load_config(CONFIG_DIR / name)                       # and it loads


def test_the_default_config_is_the_dataclasses():
    assert load_config() == TrainerConfig()


def test_a_restated_default_is_found_wherever_it_is(tmp_path):
    raw = {"batch_size": 32, "student": {"epochs": 6, "lr": 0.005, "token_kd": {"V": 1.0}},
           "teacher": {"widths": [32, 64, 128, 192]}, "data": {"levels": {"card_scale": [0.5, 0.65], "snr_db": [5.0, 25.0]}}}
    assert sorted(redundant_settings(raw)) == ["batch_size", "data.levels", "student.epochs", "student.token_kd",
                                               "teacher.widths"]
    assert redundant_settings({"student": {"lr": 0.005}, "data": {"levels": {}}}) == []
