"""Optical flow backends, the Middlebury reader and `python -m edge.bench flow`."""
# Tier: unit.
import json

import cv2
import numpy as np
import pytest

from edge.bench.__main__ import main as bench_main
from edge.bench.middlebury import FlowDataError, epe, read_flo, resize_flow
from edge.errors import ConfigError, PreprocessError
from edge.preprocess import FlowConfig, PreprocessConfig, compute_flow, make_flow_backend

CFG = PreprocessConfig()


def _backend(name: str):
    if name == "torch":
        pytest.importorskip("torch")
    return make_flow_backend(FlowConfig(backend=name))


def _shifted_texture(size: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 255, (size, size)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    moved = cv2.warpAffine(tex, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size),
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return tex.astype(np.uint8), np.clip(moved, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["dis", "farneback", "torch"])
@pytest.mark.parametrize("size, dx, dy", [(64, 1.5, -1.0), (160, 4.0, 2.5)])
def test_backends_recover_a_shift(name, size, dx, dy):
    prev, nxt = _shifted_texture(size, dx, dy)
    flow = _backend(name)(prev, nxt)
    assert flow.shape == (size, size, 2) and flow.dtype == np.float32
    m = size // 8                                          # ignore borders, where the content is reflected
    mean = flow[m:-m, m:-m].reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(mean, [dx, dy], atol=0.25)


@pytest.mark.parametrize("name", ["dis", "farneback", "torch"])
def test_backends_reject_mismatched_frames(name):
    with pytest.raises(PreprocessError, match="grayscale"):
        _backend(name)(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


def test_torch_flow_restores_torch_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    make_flow_backend(FlowConfig(backend="torch", params={"device": "cpu", "cpu_threads": 1}))(
        *_shifted_texture(32, 1.0, 0.0))
    assert torch.get_num_threads() == before


def test_dis_does_not_depend_on_earlier_frame_sizes():
    """OpenCV's DIS lowers its finest scale for good after a small frame; DISFlow must undo that."""
    big = _shifted_texture(256, 3.0, 1.0)
    fresh = make_flow_backend(FlowConfig())(*big)
    used = make_flow_backend(FlowConfig())
    used(*_shifted_texture(32, 1.0, 0.0))
    np.testing.assert_array_equal(used(*big), fresh)


def test_compute_flow_at_lower_scale_keeps_model_units():
    prev, nxt = _shifted_texture(CFG.frame_size, 2.0, 0.0)
    flow = compute_flow(_backend("dis"), prev, nxt, CFG, scale=0.5)
    assert flow.shape == (CFG.frame_size, CFG.frame_size, 2)
    assert flow[8:-8, 8:-8, 0].mean() == pytest.approx(2.0, abs=0.4)


def test_unknown_backend_and_parameters():
    with pytest.raises(ConfigError, match="unknown flow backend"):
        make_flow_backend(FlowConfig(backend="raft"))
    with pytest.raises(ConfigError, match="DIS preset"):
        make_flow_backend(FlowConfig(preset="slowest"))
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="odd window"):
        make_flow_backend(FlowConfig(backend="torch", params={"window": 4}))
    with pytest.raises(ConfigError, match="unknown torch flow parameter"):
        make_flow_backend(FlowConfig(backend="torch", params={"iters": 4}))


# ---- Middlebury reader --------------------------------------------------------------------------------------

def _write_flo(path, flow):
    h, w = flow.shape[:2]
    with open(path, "wb") as fh:
        np.float32(202021.25).tofile(fh)
        np.int32([w, h]).tofile(fh)
        flow.astype("<f4").tofile(fh)


def test_read_flo_masks_unknown_and_resize_scales(tmp_path):
    flow = np.zeros((4, 6, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -1.0
    flow[0, 0] = 1e10
    _write_flo(tmp_path / "a.flo", flow)
    read, valid = read_flo(tmp_path / "a.flo")
    assert valid.sum() == 23 and not valid[0, 0] and (read[0, 0] == 0).all()
    small, small_valid = resize_flow(read, valid, 3, 2)
    assert small.shape == (2, 3, 2) and not small_valid[0, 0] and small_valid[1:, 1:].all()
    np.testing.assert_allclose(small[1, 2], [1.5, -0.5])   # vectors scale with each axis
    assert epe(small, small, small_valid) == 0.0


def test_read_flo_rejects_truncated_and_foreign_files(tmp_path):
    _write_flo(tmp_path / "a.flo", np.zeros((4, 6, 2), np.float32))
    raw = (tmp_path / "a.flo").read_bytes()
    (tmp_path / "short.flo").write_bytes(raw[:-8])
    (tmp_path / "png.flo").write_bytes(b"\x89PNG" + raw[4:])
    with pytest.raises(FlowDataError, match="truncated"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(FlowDataError, match="magic"):
        read_flo(tmp_path / "png.flo")
    with pytest.raises(FlowDataError, match="cannot read"):
        read_flo(tmp_path / "missing.flo")


# ---- real Middlebury pairs and the benchmark command --------------------------------------------------------

@pytest.mark.parametrize("name, bound_model, bound_full", [
    ("dis", 0.15, 0.6), ("farneback", 0.15, 0.8), ("torch", 0.15, 0.35)])
def test_middlebury_epe_under_bound(data_root, name, bound_model, bound_full):
    from edge.bench.flow import _inputs, measure

    inputs = _inputs(CFG, data_root)
    backend = _backend(name)
    assert measure(backend, inputs["model"], 1)[0] < bound_model
    assert measure(backend, inputs["full"], 1)[0] < bound_full


def test_bench_flow_json(data_root, capsys):
    assert bench_main(["flow", "--data-root", str(data_root), "--backends", "dis", "farneback",
                       "--repeats", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["backend"], r["size"]) for r in rows] == [
        ("dis", "model"), ("dis", "full"), ("farneback", "model"), ("farneback", "full")]
    assert all(set(r) == {"backend", "size", "epe_px", "ms_median"} and r["ms_median"] > 0 for r in rows)


def test_bench_flow_missing_data_root_is_one_sentence(tmp_path, capsys):
    assert bench_main(["flow", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no Middlebury flow folder" in err
