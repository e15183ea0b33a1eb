"""int8 quantization, temperature scaling and the calibration pipeline on a random-weight bundle."""
# Tier: unit, except the tests marked integration (a whole calibration, every fusion variant quantized;
# the slow real-clip CLI run).
from __future__ import annotations

import numpy as np
import onnx
import pytest

from calibration.data import encoder_feeds, fusion_feeds
from calibration.evaluate import encode, open_session
from calibration.quantize import ENCODER_VARIANTS, FUSION_VARIANTS, quantize_variant
from calibration.temperature import action_confidence, expected_calibration_error, fit_temperature, nll
from edge.bundle import load_bundle
from edge.modalities import SUBSETS, subset_mask
from trainer.data.clip_set import ClipSet


def random_clips(n: int, seed: int) -> ClipSet:
    rng = np.random.default_rng(seed)
    inputs = {"V": rng.standard_normal((n, 8, 6, 64, 64)).astype(np.float16),
              "F": rng.uniform(-1, 1, (n, 8, 2, 64, 64)).astype(np.float16),
              "A": rng.normal(-5, 3, (n, 5, 1, 64, 98)).astype(np.float16)}
    return ClipSet(inputs, rng.integers(0, 8, n), rng.integers(0, 10, n), source={"dataset": "random arrays"})


def test_fusion_feeds_zero_missing_tokens_and_cover_every_subset():
    rng = np.random.default_rng(0)
    tokens = {m: rng.standard_normal((30, t, 64)).astype(np.float32) + 3.0 for m, t in (("V", 8), ("F", 8), ("A", 5))}
    feeds = fusion_feeds(tokens, 4, rng)
    assert len(feeds) == 120
    seen = set()
    for feed in feeds:
        mask = feed["mask"][0]
        assert mask.shape == (3,) and mask.any()
        seen.add("".join(m for m, on in zip("VFA", mask) if on))
        for present, name in zip(mask, ("video_tokens", "flow_tokens", "audio_tokens")):
            assert bool(np.abs(feed[name]).sum() > 0) == bool(present)
    assert seen == set(SUBSETS)


def test_encoder_feeds_are_distinct_single_inputs():
    x = np.arange(5 * 8, dtype=np.float16).reshape(5, 8, 1, 1, 1)
    feeds = encoder_feeds(x, "frame", 16, np.random.default_rng(0))
    values = [float(f["frame"][0, 0, 0, 0]) for f in feeds]
    assert len(set(values)) == 16 and all(f["frame"].shape == (1, 1, 1, 1) and f["frame"].dtype == np.float32
                                          for f in feeds)


@pytest.mark.parametrize("variant", ENCODER_VARIANTS, ids=lambda v: v.name)
def test_quantized_encoder_keeps_its_tokens_and_shrinks(random_bundle, tmp_path, variant):
    clips = random_clips(6, 1)
    src = random_bundle / "video_encoder.onnx"
    feeds = encoder_feeds(clips.inputs["V"], "frame", 32, np.random.default_rng(0))
    dst = quantize_variant(src, tmp_path / "v.onnx", feeds, variant)
    assert dst.stat().st_size < 0.3 * src.stat().st_size
    ref = encode(open_session(src), clips.inputs["V"])
    got = encode(open_session(dst), clips.inputs["V"])
    cosine = (ref * got).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1))
    assert cosine.min() > 0.98


@pytest.mark.integration
def test_every_fusion_variant_runs_and_keeps_the_interface(random_bundle, tmp_path):
    rng = np.random.default_rng(0)
    tokens = {m: rng.standard_normal((8, t, 64)).astype(np.float32) for m, t in (("V", 8), ("F", 8), ("A", 5))}
    feeds = fusion_feeds(tokens, 2, rng)
    ref = open_session(random_bundle / "fusion.onnx")
    for variant in FUSION_VARIANTS:
        session = open_session(quantize_variant(random_bundle / "fusion.onnx", tmp_path / f"{variant.name}.onnx",
                                                feeds, variant))
        assert [i.name for i in session.get_inputs()] == [i.name for i in ref.get_inputs()]
        verb, noun = session.run(["verb_logits", "noun_logits"], feeds[0])
        assert verb.shape == (1, 8) and noun.shape == (1, 10)
        # A random fusion's logits are small (|x| < 0.4), so compare how they vary over the feeds, not one feed.
        got = np.concatenate([session.run(["verb_logits"], f)[0].ravel() for f in feeds])
        want = np.concatenate([ref.run(["verb_logits"], f)[0].ravel() for f in feeds])
        assert np.corrcoef(got, want)[0, 1] > 0.9, variant.name


def _sampled(n: int, scale: float, seed: int = 0):
    """Labels drawn from softmax(z) for logits z, returned as logits z * scale (over-confident when scale > 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for classes in (8, 10):
        z = rng.normal(0, 2.0, (n, classes))
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        labels = np.array([rng.choice(classes, p=row) for row in p])
        out += [z * scale, labels]
    return out[0], out[2], out[1], out[3]


def test_fit_temperature_recovers_the_overconfidence_factor():
    verb_logits, noun_logits, verb, noun = _sampled(4000, scale=3.0)
    t = fit_temperature(verb_logits, noun_logits, verb, noun)
    assert 2.6 < t < 3.4
    assert nll(verb_logits, noun_logits, verb, noun, t) < nll(verb_logits, noun_logits, verb, noun, 1.0)
    before = expected_calibration_error(*action_confidence(verb_logits, noun_logits, verb, noun))
    after = expected_calibration_error(*action_confidence(verb_logits, noun_logits, verb, noun, t))
    assert after < before / 2 and after < 3.0


def test_ece_is_zero_when_confidence_matches_accuracy():
    conf = np.full(1000, 0.7)
    correct = np.arange(1000) % 10 < 7
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(np.full(1000, 0.95), correct) == pytest.approx(25.0)


@pytest.mark.integration
def test_calibrate_writes_a_loadable_int8_bundle(random_bundle, tmp_path):
    from calibration.pipeline import Splits, calibrate
    from calibration.report import markdown

    out = tmp_path / "random_int8"
    report = calibrate(random_bundle, Splits(random_clips(4, 2), random_clips(12, 3), random_clips(12, 4)), out,
                       encoder_inputs=16, masks_per_clip=4, timing_repetitions=10,
                       source={"dataset": "random arrays"}, log=lambda _: None,
                       write_anyway=True)     # 12 random clips: one flipped clip is 8 points, so no target gate here
    bundle = load_bundle(out)
    fp32 = load_bundle(random_bundle)
    assert bundle.precision == "int8" and bundle.manifest["kind"] == "student"
    assert set(bundle.manifest["temperatures"]) == set(SUBSETS)
    assert bundle.temperature("VA") == report["temperatures"]["VA"]
    calib = bundle.manifest["extra"]["calibration_set"]
    assert calib["dataset"] == "random arrays" and calib["clips"] == 4 and calib["inputs"]["fusion"] == 16
    assert set(bundle.manifest["extra"]["quantization"]["formats"]) == {"video_encoder", "flow_encoder",
                                                                          "audio_encoder", "fusion"}
    assert report["size"]["ratio"] < 0.30
    assert set(report["retention_test"]["int8"]) == set(SUBSETS)
    assert len(report["combinations_val"]) == len(ENCODER_VARIANTS) ** 3 * len(FUSION_VARIANTS)
    # The written bundle runs through edge and gives logits close to the fp32 bundle's on in-distribution tokens.
    clips = random_clips(6, 5)
    roles = (("V", "video_encoder", "video_tokens"), ("F", "flow_encoder", "flow_tokens"),
             ("A", "audio_encoder", "audio_tokens"))
    feeds = {name: encode(fp32.sessions[role], clips.inputs[m]) for m, role, name in roles}
    feeds["mask"] = subset_mask("VFA", 6)
    ref, got = fp32.run("fusion", **feeds)[0], bundle.run("fusion", **feeds)[0]
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.95
    text = markdown(report)
    assert "| VFA |" in text and "ECE" in text


def _tiny_config(tmp_path, n_val: int, n_test: int):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"data": {"n_val": n_val, "n_test": n_test, "workers": 0}}))
    return path


def test_cli_rejects_more_calibration_clips_than_val_clips(random_bundle, tmp_path, capsys):
    from calibration.__main__ import main

    code = main(["quantize", "--bundle", str(random_bundle), "--config", str(_tiny_config(tmp_path, 8, 8)),
                 "--calib-clips", "9", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "more than the 8 val clips" in err[0]


def test_cli_refuses_media_options_on_moving_digits(random_bundle, tmp_path, capsys):
    """--limit (or any media option) cannot shrink the rendered MovingDigits-AV splits: refused, not ignored."""
    from calibration.__main__ import main

    code = main(["quantize", "--bundle", str(random_bundle), "--limit", "5", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "takes no media options (--limit)" in err[0]


@pytest.mark.slow
@pytest.mark.integration
def test_cli_quantizes_on_real_held_out_clips(data_root, random_bundle, tmp_path, capsys):
    """The whole command on a few real MovingDigits-AV clips: report files, and the data recorded in the bundle."""
    import json

    from calibration.__main__ import main

    out, stem = tmp_path / "int8", tmp_path / "report"
    code = main(["quantize", "--bundle", str(random_bundle), "--out", str(out), "--data-root", str(data_root),
                 "--config", str(_tiny_config(tmp_path, 10, 8)), "--calib-clips", "4", "--encoder-inputs", "16",
                 "--timing-repetitions", "10", "--cache", str(tmp_path / "cache"), "--report", str(stem),
                 "--write-anyway"])
    assert code in (0, 1)
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["clips"] == {"calib": 4, "val": 10, "test": 8}
    assert "| VFA |" in stem.with_suffix(".md").read_text()
    calib = load_bundle(out).manifest["extra"]["calibration_set"]
    assert calib["data_source"].startswith("real") and calib["calibration_split"] == "val"
    assert calib["val_split"]["speakers"] != calib["test_split"]["speakers"]



@pytest.mark.parametrize("name", ["qdq_float_input", "qoperator_float_input"])
def test_float_input_variants_never_round_the_input(random_bundle, tmp_path, name):
    """frame+diff: the frame difference spans a small part of the input's range, and a per-tensor uint8 input
    rounds most of it away (on the shipped student: V -2.0, F+A -12.6 val action points); the float_input
    variants feed the input to a float first conv and quantize from its output on."""
    variant = {v.name: v for v in ENCODER_VARIANTS}[name]
    clips = random_clips(4, 2)
    feeds = encoder_feeds(clips.inputs["V"], "frame", 16, np.random.default_rng(0))
    graph = onnx.load(str(quantize_variant(random_bundle / "video_encoder.onnx", tmp_path / "v.onnx", feeds,
                                           variant))).graph
    assert [n.op_type for n in graph.node if "frame" in n.input] == ["Conv"]
    assert sum(n.op_type in ("QLinearConv", "DequantizeLinear") for n in graph.node) >= 3  # the rest is int8
