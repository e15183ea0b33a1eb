"""Training items that imitate the live stream (the trainer's data.stream): soft targets by overlap, windows cut
across action boundaries, refilling token rings, and the settings' checks."""
# Tier: unit.
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.errors import ConfigError  # noqa: E402
from edge.moving_digits import Segment, make_split  # noqa: E402
from trainer.data.moving_digits import MovingDigitsDataset, StreamWindows, overlap_targets  # noqa: E402


def _dataset(**stream) -> MovingDigitsDataset:
    return MovingDigitsDataset(make_split("val", images=(6000, 6200)), n_clips=40, seed=3, data_root=None,
                               stream=StreamWindows(**stream))


def test_overlap_targets_share_the_window_and_spread_idle_uniformly():
    segments = [Segment(1.0, 3.0, 2, 5), Segment(3.5, 5.5, 4, 7)]
    verb, noun = overlap_targets(segments, 2.0, 4.0, 8, 10)        # 1 s of the first, 0.5 s of the second, 0.5 idle
    assert verb.sum() == pytest.approx(1.0) and noun.sum() == pytest.approx(1.0)
    assert verb[2] == pytest.approx(0.5 + 0.25 / 8) and verb[4] == pytest.approx(0.25 + 0.25 / 8)
    assert noun[5] == pytest.approx(0.5 + 0.025) and noun[0] == pytest.approx(0.025)
    idle_verb, _ = overlap_targets(segments, 6.0, 8.0, 8, 10)
    assert np.allclose(idle_verb, 1 / 8)                            # idle only: no class preferred


def test_stream_windows_have_soft_targets_whole_clips_one_hot():
    plain = _dataset()
    item = plain[5]
    assert item["verb_t"].sum() == pytest.approx(1.0) and item["verb_t"][item["verb"]] == 1.0
    streamed = _dataset(fraction=1.0)
    assert streamed.cache_key() != plain.cache_key()
    soft = [streamed[i] for i in range(6)]
    assert all(float(s["verb_t"].sum()) == pytest.approx(1.0) for s in soft)
    assert any(float(s["verb_t"].max()) < 0.99 for s in soft)      # windows that cross a boundary or an idle gap
    assert all(s["V"].shape == (8, 6, 64, 64) for s in soft)
    half = _dataset(fraction=0.5)
    assert 5 <= sum(half.is_stream_window(i) for i in range(40)) <= 35


def test_a_refilling_ring_repeats_its_oldest_fresh_token_with_no_motion():
    item = _dataset(warmup_prob=1.0)[7]
    v = item["V"].numpy()
    repeated = int((np.abs(v - v[0]).reshape(8, -1).max(1) == 0).sum())    # tokens equal to the first
    assert 1 <= repeated <= 5 and np.all(v[:repeated, 3:] == 0)           # the oldest fresh token: zero difference
    a = item["A"].numpy()
    assert np.array_equal(a[0], a[1])


@pytest.mark.parametrize("bad", [{"fraction": 1.5}, {"flow_scales": [1.0, 0.5], "flow_scale_probs": [1.0]},
                                 {"flow_scales": [1.0], "flow_scale_probs": [0.5]}, {"gap_s": [2.0, 1.0]}])
def test_bad_stream_settings_are_one_sentence(bad):
    with pytest.raises(ConfigError, match="data.stream"):
        StreamWindows.from_dict(bad)
