"""`python -m trainer finetune`: a shipped bundle's student taught a new label set from a recordings folder,
exported as a bundle the runtime loads and `python -m calibration quantize` takes; bad inputs exit 2 with one
sentence. Media are tiny generated videos (the content does not matter here: the measured run is in the README)."""
# Tier: unit, except the tests marked integration (whole fine-tunings, exports and live runs).
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from calibration.__main__ import main as calibration_main
from edge.bundle import MANIFEST, WEIGHTS, load_bundle, sha256_of
from trainer.__main__ import main
from trainer.finetune import bundle_model

from media_helpers import write_video

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "assets" / "bundles" / "karmma_s"
ACTIONS = (("wave", "hand"), ("tap", "desk"), ("swipe", "phone"))


def write_takes(rec: Path, takes: dict[str, int]) -> Path:
    """One video per split with `takes[split]` 1.5 s takes of each action (a different grey ramp per action)."""
    header = "media,start,end,verb,noun\n"
    for s, (split, n) in enumerate(takes.items()):
        rows = [(k, a) for k in range(n) for a in range(len(ACTIONS))]
        write_video(rec / f"{split}.mp4", 46 * len(rows) + 4, 30, audio=True,
                    level=lambda f, s=s: (40 + 23 * (f // 46) + 3 * (f % 46) + 11 * s) % 200 + 20)
        lines = [f"{split}.mp4,{46 * i / 30:.3f},{(46 * i + 45) / 30:.3f},{ACTIONS[a][0]},{ACTIONS[a][1]}"
                 for i, (_, a) in enumerate(rows)]
        (rec / f"{split}.csv").write_text(header + "\n".join(lines) + "\n")
    return rec


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> Path:
    return write_takes(tmp_path_factory.mktemp("rec") / "recordings", {"train": 2, "val": 1, "test": 1})


def finetune(rec: Path, out: Path, source: Path = SHIPPED, *extra: str) -> int:
    return main(["finetune", "--dataset", "recordings", "--data-root", str(rec.parent), "--annotations", str(rec),
                 "--from", str(source), "--out", str(out), "--smoke", *extra])


def one_sentence(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_shipped_weights_reproduce_the_shipped_onnx_files():
    bundle = load_bundle(SHIPPED)
    model = bundle_model(bundle).eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(3, bundle.preprocess.video_channels, 64, 64, generator=g)
    tokens = [torch.randn(3, n, 64, generator=g) for n in (8, 8, 5)]
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 1], [0, 0, 1]])
    with torch.no_grad():
        assert np.abs(model.encoders["V"](frames).numpy() - bundle.run("video_encoder", frame=frames.numpy())[0]).max() < 1e-5
        verb, _ = model.fusion(*tokens, mask)
    onnx_verb = bundle.run("fusion", video_tokens=tokens[0].numpy(), flow_tokens=tokens[1].numpy(),
                           audio_tokens=tokens[2].numpy(), mask=mask.numpy())[0]
    assert np.abs(verb.numpy() - onnx_verb).max() < 1e-5


@pytest.mark.integration
def test_finetune_exports_a_bundle_the_runtime_and_quantize_take(takes, tmp_path, capsys):
    assert finetune(takes, tmp_path / "run", SHIPPED) == 0
    assert "wall time" in capsys.readouterr().out
    bundle = load_bundle(tmp_path / "run" / "bundle")
    assert bundle.labels == {"verb": sorted(a[0] for a in ACTIONS), "noun": sorted(a[1] for a in ACTIONS)}
    assert bundle.file(WEIGHTS).is_file() and bundle.manifest["extra"]["finetuned_from"]["name"] == "karmma_s-moving-digits"
    assert bundle.manifest["name"] == "recordings"                          # the dataset folder's name
    assert sorted(map(tuple, bundle.manifest["actions"])) == sorted(ACTIONS)   # only what was recorded
    results = json.loads((tmp_path / "run" / "finetune" / "results.json").read_text())
    assert set(results["splits"]) == {"val", "test"}
    assert set(results["splits"]["val"]) == {"VFA", "VF", "VA", "FA", "V", "F", "A"}
    assert all(row["takes"] == len(ACTIONS) for row in results["splits"]["val"].values())
    code = calibration_main(["quantize", "--bundle", str(tmp_path / "run" / "bundle"), "--dataset", "recordings",
                             "--data-root", str(takes.parent), "--annotations", str(takes), "--calib-clips", "2",
                             "--encoder-inputs", "8", "--masks-per-clip", "1", "--timing-repetitions", "2",
                             "--report", str(tmp_path / "calib"), "--write-anyway"])
    assert code in (0, 1)      # 1: misses the 1-point target on 3 samples (written anyway)
    assert load_bundle(tmp_path / "run" / "bundle_int8").labels == bundle.labels


@pytest.mark.integration
def test_fusion_finetune_keeps_the_bundle_encoders(takes, tmp_path):
    """train: fusion with freeze_bn: the encoders, BatchNorm statistics too, stay the bundle's exactly; the fusion
    learns, and the heads' last layers are new."""
    assert finetune(takes, tmp_path / "run", SHIPPED, "--eval-splits", "--name", "mine",
                    "--set", "finetune.train=fusion", "finetune.freeze_bn=true") == 0
    assert load_bundle(tmp_path / "run" / "bundle").manifest["name"] == "mine"
    new, old = load_bundle(tmp_path / "run" / "bundle"), load_bundle(SHIPPED)
    x = np.random.default_rng(0).standard_normal((2, 2, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(new.run("flow_encoder", flow=x)[0], old.run("flow_encoder", flow=x)[0], atol=1e-6)
    trained, shipped = bundle_model(new).state_dict(), bundle_model(old).state_dict()
    changed = {k for k in shipped if trained[k].shape != shipped[k].shape or not torch.equal(trained[k], shipped[k])}
    assert not any(k.startswith("encoders.") for k in changed)
    assert {f"fusion.head_{h}.2.{p}" for h in ("verb", "noun") for p in ("weight", "bias")} < changed
    assert "fusion.t_mod.V" in changed and "fusion.layers.0.qkv.weight" in changed


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_files(bundle: Path, edit) -> None:
    manifest = yaml.safe_load((bundle / MANIFEST).read_text())
    edit(manifest["files"])
    (bundle / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


@pytest.mark.parametrize("case, expect", [
    ("missing bundle", "does not exist"),
    ("no weights", "has no torch weights"),
    ("tampered weights", "does not match its sha256"),
    ("weights of another model", "weights.pt does not fit its manifest's model"),
    ("empty split", "recordings val has no segments: its annotation file lists none."),
    ("class without takes", "the training takes have no verb 'jump'"),
    ("bad --set key", "unknown key(s) ['nope']"),
    ("bad phase", "finetune.train must be one of"),
])
def test_bad_inputs_exit_2_with_one_sentence(case, expect, takes, tmp_path, capsys):
    rec, source, extra = takes, SHIPPED, []
    if case == "missing bundle":
        source = tmp_path / "nowhere"
    elif case == "no weights":
        source = _copy(SHIPPED, tmp_path / "b")
        _edit_files(source, lambda files: files.pop(WEIGHTS))
        (source / "weights.pt").unlink()
    elif case == "tampered weights":
        source = _copy(SHIPPED, tmp_path / "b")
        with open(source / "weights.pt", "ab") as fh:
            fh.write(b"x")
    elif case == "weights of another model":
        source = _copy(SHIPPED, tmp_path / "b")
        torch.save({"fusion.cls": torch.zeros(1, 1, 64)}, source / "weights.pt")
        _edit_files(source, lambda files: files[WEIGHTS].update(sha256=sha256_of(source / "weights.pt")))
    elif case in ("empty split", "class without takes"):
        rec = _copy(takes, tmp_path / "recordings")
        if case == "empty split":
            (rec / "val.csv").write_text("media,start,end,verb,noun\n")
        else:
            (rec / "labels.json").write_text(json.dumps({"verb": ["jump", *sorted(a[0] for a in ACTIONS)],
                                                         "noun": sorted(a[1] for a in ACTIONS)}))
    elif case == "bad --set key":
        extra = ["--set", "finetune.nope=1"]
    else:
        extra = ["--set", "finetune.train=encoders"]
    assert finetune(rec, tmp_path / "run", source, *extra) == 2
    assert expect in one_sentence(capsys)


@pytest.mark.integration
def test_new_actions_folder_holds_the_own_actions_as_the_recordings_dataset_reads_them(tmp_path):
    """`python -m trainer.data.new_actions` writes the recorder's layout: every take of every own action, its
    label in the own actions' names, readable as the `recordings` dataset."""
    from edge.moving_digits.own_actions import OWN_ACTIONS
    from edge.preprocess import PreprocessConfig
    from trainer.config import load_config
    from trainer.data.new_actions import main as write_main
    from trainer.data.registry import DatasetSpec, build_dataset

    root = tmp_path / "recordings"
    assert write_main(["--out", str(root), "--train", "1", "--val", "0", "--test", "1"]) == 0
    spec = DatasetSpec("recordings", str(tmp_path), {})
    for split in ("train", "test"):
        data = build_dataset(spec, split, train=False, data=load_config().data, pre=PreprocessConfig())
        assert data.labels == {"verb": [v for v, _ in OWN_ACTIONS], "noun": [n for _, n in OWN_ACTIONS]}
        assert sorted((s.verb, s.noun) for s in data.segments) == [(i, i) for i in range(len(OWN_ACTIONS))]


@pytest.mark.integration
def test_a_torchvision_backbone_from_a_local_state_dict_finetunes_exports_streams_and_runs_live(takes, tmp_path):
    """Bring your own backbone: mobilenet_v3_small from a state-dict file (random weights here; ImageNet ones a user
    downloaded elsewhere work the same), the frame-difference channels starting at zero weight, fine-tuned,
    exported to ONNX; its bundle streams as it scores whole clips and runs live."""
    torchvision = pytest.importorskip("torchvision")
    from edge.live.arrays import ArrayVideo
    from edge.live.streaming import StreamingStudent
    from tests.live_helpers import run_live_session
    from tests.test_live_streaming import clip_logits, smooth_frames
    from trainer.extractors import video_backbone

    weights = tmp_path / "mobilenet_v3_small.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), weights)
    encoder = video_backbone(f"torchvision:mobilenet_v3_small:{weights}", 64)
    adapter = encoder.extractor.adapter.weight[:, :, 0, 0]
    assert torch.equal(adapter[:, 3:], torch.zeros(3, 3)) and torch.equal(adapter[:, :3], torch.eye(3))

    assert finetune(takes, tmp_path / "run", SHIPPED, "--eval-splits", "test", "--backbone",
                    f"torchvision:mobilenet_v3_small:{weights}") == 0
    bundle = load_bundle(tmp_path / "run" / "bundle")
    assert bundle.manifest["extra"]["model_config"]["video_encoder"] == "torchvision:mobilenet_v3_small"
    model = bundle_model(bundle).eval()                      # rebuilt from the bundle alone: no weights file needed
    x = torch.randn(2, bundle.preprocess.video_channels, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(model.encoders["V"](x).numpy(), bundle.run("video_encoder", frame=x.numpy())[0],
                                   atol=1e-4)
    frames = list(smooth_frames(10, 64, 0))
    windows = [np.random.default_rng(k).normal(0, 0.1, 16000).astype(np.float32) for k in range(5)]
    student = StreamingStudent(bundle, {"V": 8, "F": 8, "A": 5})
    for i, frame in enumerate(frames):
        student.add_frame(frame, float(i), flow_scale=1.0)
    for j, w in enumerate(windows):
        student.add_audio(w, 16000, float(j))
    for got, want in zip(student.logits((True, True, True)), clip_logits(bundle, frames[-8:], frames[-9], windows,
                                                                          (True, True, True))):
        np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-4)
    _, records, _ = run_live_session(bundle, ArrayVideo(list(smooth_frames(40, 96, 1)), 8.0, realtime=False))
    said = {(r["verb"], r["noun"]) for r in records if r["type"] == "prediction" and r["verb"]}
    assert said and said <= set(ACTIONS)
