"""Model bundle contract: a valid bundle loads and runs; every broken one is one BundleError sentence naming the file."""
# Tier: unit.
import shutil

import numpy as np
import pytest
import yaml

from edge.bundle import MANIFEST, ROLES, WEIGHTS, load_bundle, sha256_of
from edge.errors import BundleError


@pytest.fixture
def bundle_copy(random_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(random_bundle, dst)
    return dst


def _edit_manifest(path, edit):
    manifest = yaml.safe_load((path / MANIFEST).read_text())
    edit(manifest)
    (path / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


def _load_error(path) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    return message


def test_random_bundle_loads_and_runs(random_bundle):
    bundle = load_bundle(random_bundle)
    assert set(bundle.sessions) == set(ROLES) and bundle.precision == "fp32"
    pre, dim, tok = bundle.preprocess, bundle.manifest["token_dim"], bundle.manifest["tokens"]
    s = pre.frame_size
    (v,) = bundle.run("video_encoder", frame=np.zeros((2, bundle.preprocess.video_channels, s, s), np.float32))
    (f,) = bundle.run("flow_encoder", flow=np.zeros((2, 2, s, s), np.float32))
    (a,) = bundle.run("audio_encoder", logmel=np.zeros((2, 1, pre.n_mels, pre.logmel_frames), np.float32))
    assert v.shape == (2, dim["V"]) and f.shape == (2, dim["F"]) and a.shape == (2, dim["A"])
    verb, noun = bundle.run("fusion", video_tokens=np.zeros((1, tok["V"], dim["V"]), np.float32),
                            flow_tokens=np.zeros((1, tok["F"], dim["F"]), np.float32),
                            audio_tokens=np.zeros((1, tok["A"], dim["A"]), np.float32),
                            mask=np.array([[1, 0, 1]], np.float32))
    assert verb.shape == (1, len(bundle.labels["verb"])) and noun.shape == (1, len(bundle.labels["noun"]))
    assert bundle.temperature("VA") == 1.0


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.pop("labels"), "missing required key(s) ['labels']"),
    (lambda m: m.update(colour="red"), "unknown key(s) ['colour']"),
    (lambda m: m.update(format_version=2), "format version 2"),
    (lambda m: m["preprocess"].update(frame_sise=64), "unknown key(s) ['frame_sise']"),
    (lambda m: m.update(precision="fp16"), "precision"),
])
def test_bad_manifest_is_one_sentence_naming_it(bundle_copy, edit, needle):
    _edit_manifest(bundle_copy, edit)
    message = _load_error(bundle_copy)
    assert MANIFEST in message and needle in message


def test_truncated_onnx_with_matching_hash_reaches_onnxruntime(bundle_copy):
    onnx = bundle_copy / "fusion.onnx"
    onnx.write_bytes(onnx.read_bytes()[:200])
    _edit_manifest(bundle_copy, lambda m: m["files"]["fusion"].update(sha256=sha256_of(onnx)))
    message = _load_error(bundle_copy)
    assert "fusion.onnx" in message and "not a loadable ONNX model" in message


def test_wrong_hash(bundle_copy):
    onnx = bundle_copy / "audio_encoder.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10])
    message = _load_error(bundle_copy)
    assert "audio_encoder.onnx" in message and "sha256" in message


def test_missing_file(bundle_copy):
    (bundle_copy / "video_encoder.onnx").unlink()
    message = _load_error(bundle_copy)
    assert "video_encoder.onnx" in message and "missing" in message


def test_model_with_the_wrong_signature(bundle_copy):
    # A video encoder where the flow encoder should be: loadable, hash fixed up, wrong input name.
    shutil.copyfile(bundle_copy / "video_encoder.onnx", bundle_copy / "flow_encoder.onnx")
    _edit_manifest(bundle_copy, lambda m: m["files"]["flow_encoder"].update(
        sha256=sha256_of(bundle_copy / "flow_encoder.onnx")))
    message = _load_error(bundle_copy)
    assert "flow_encoder.onnx" in message and "'flow'" in message


def test_missing_folder_and_manifest(tmp_path):
    assert "does not exist" in _load_error(tmp_path / "nowhere")
    assert MANIFEST in _load_error(tmp_path)
    (tmp_path / MANIFEST).write_text("a: [unclosed")
    assert "not valid YAML" in _load_error(tmp_path)
    (tmp_path / MANIFEST).write_bytes(b"\xff\xfe\x00binary")
    assert "not valid YAML" in _load_error(tmp_path)


@pytest.mark.parametrize("where", ["absolute", "parent", "symlink"])
def test_manifest_paths_outside_the_bundle_are_refused_even_when_the_hash_matches(bundle_copy, tmp_path, where):
    outside = tmp_path / "elsewhere" / "fusion.onnx"
    outside.parent.mkdir()
    shutil.copyfile(bundle_copy / "fusion.onnx", outside)
    rel = {"absolute": str(outside), "parent": "../elsewhere/fusion.onnx", "symlink": "link/fusion.onnx"}[where]
    if where == "symlink":
        (bundle_copy / "link").symlink_to(outside.parent)
    _edit_manifest(bundle_copy, lambda m: m["files"]["fusion"].update(path=rel))
    message = _load_error(bundle_copy)
    assert "outside the bundle folder" in message or "inside the bundle folder" in message


def test_onnx_files_with_external_data_are_refused(bundle_copy):
    import onnx

    model = onnx.load(str(bundle_copy / "fusion.onnx"))
    onnx.save_model(model, str(bundle_copy / "fusion.onnx"), save_as_external_data=True,
                    location="fusion.data", size_threshold=0)
    digest = sha256_of(bundle_copy / "fusion.onnx")
    _edit_manifest(bundle_copy, lambda m: m["files"]["fusion"].update(sha256=digest))
    assert "external data" in _load_error(bundle_copy)


def test_weights_file_is_hashed_when_listed_and_optional(bundle_copy):
    """The trainer's weights.pt (what fine-tuning starts from) is checked like the ONNX files, never needed."""
    assert load_bundle(bundle_copy).file(WEIGHTS) == bundle_copy / "weights.pt"
    (bundle_copy / "weights.pt").write_bytes(b"tampered")
    assert "(weights) does not match its sha256" in _load_error(bundle_copy)
    (bundle_copy / "weights.pt").unlink()
    assert "(weights) is missing" in _load_error(bundle_copy)
    _edit_manifest(bundle_copy, lambda m: m["files"].pop(WEIGHTS))
    assert load_bundle(bundle_copy).file(WEIGHTS) is None
