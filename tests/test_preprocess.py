"""edge.preprocess: frame sampling, colour conversion, resize/normalisation, audio mixdown/resampling/log-mel."""
# Tier: unit.
import dataclasses

import numpy as np
import pytest

from edge.errors import ConfigError, PreprocessError
from edge.preprocess import (CameraFrame, FlowConfig, PreprocessConfig, flow_to_model_input, log_mel, mixdown,
                             normalize_frame, prepare_frame, resample, to_gray, to_rgb_uint8, uniform_indices,
                             window_to_model_input)

CFG = PreprocessConfig()


# ---- frames -------------------------------------------------------------------------------------------------

def test_uniform_indices_take_the_freshest_frame_of_each_segment():
    # 2 s at 30 fps, 8 tokens at 4 fps: the frame at the end of each 1/4 s segment
    np.testing.assert_array_equal(uniform_indices(60, 8), [6, 14, 21, 29, 36, 44, 51, 59])
    np.testing.assert_array_equal(uniform_indices(8, 8), np.arange(8))


def test_uniform_indices_short_clip_repeats_frames_in_range():
    idx = uniform_indices(3, 8)
    assert idx.min() >= 0 and idx.max() == 2 and (np.diff(idx) >= 0).all()


@pytest.mark.parametrize("n_frames, n_samples", [(0, 8), (10, 0), (-1, 3)])
def test_uniform_indices_rejects_empty(n_frames, n_samples):
    with pytest.raises(PreprocessError):
        uniform_indices(n_frames, n_samples)


def test_to_rgb_converts_gray_bgr_bgra_and_16_bit():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 200                                   # blue
    assert (to_rgb_uint8(bgr)[..., 2] == 200).all() and (to_rgb_uint8(bgr)[..., 0] == 0).all()
    bgra = np.dstack([bgr, np.full((4, 6), 7, np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(bgra), to_rgb_uint8(bgr))
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    rgb = to_rgb_uint8(gray)
    assert rgb.shape == (4, 6, 3) and (rgb == gray[..., None]).all()
    assert to_rgb_uint8(gray[..., None]).shape == (4, 6, 3)
    deep = np.full((4, 6), 0xAB00, np.uint16)
    assert (to_rgb_uint8(deep) == 0xAB).all()


@pytest.mark.parametrize("frame, needle", [
    (np.zeros((0, 5, 3), np.uint8), "non-empty"),
    (np.zeros((5, 0), np.uint8), "non-empty"),
    (np.zeros((4, 4, 5), np.uint8), "channels"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4), np.int64), "dtype"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_to_rgb_bad_frames_are_one_sentence(frame, needle):
    with pytest.raises(PreprocessError, match=needle):
        to_rgb_uint8(frame)


@pytest.mark.parametrize("kind", ["rgb", "bgr", "gray", "bgra", "uint16", "float", "pyav"])
def test_a_camera_frame_prepared_at_any_size_equals_resizing_its_full_rgb_picture(kind):
    """Every format a source hands over, prepared small, is the area resize of its full RGB picture (which is
    what training sees); channel order and gray replication commute with the resize."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (96, 128, 3), np.uint8)
    raw = {"rgb": rgb, "bgr": rgb[..., ::-1].copy(), "gray": rgb[..., 0].copy(),
           "bgra": np.dstack([rgb[..., ::-1], np.full((96, 128), 9, np.uint8)]),
           "uint16": rgb.astype(np.uint16) << 8, "float": rgb.astype(np.float32) / 255.0}.get(kind)
    if kind == "pyav":
        av = pytest.importorskip("av")
        raw = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame = CameraFrame(raw, bgr=kind in ("bgr", "bgra"))
    full = frame.rgb()
    if kind == "gray":
        np.testing.assert_array_equal(full, np.repeat(rgb[..., :1], 3, axis=2))
    elif kind != "float":   # float -> uint8 rounds down
        np.testing.assert_array_equal(full, rgb)
    for size in (16, 48):
        expected = prepare_frame(full, dataclasses.replace(CFG, frame_size=size))
        np.testing.assert_array_equal(frame.prepared(size)[0], expected)


def test_a_camera_frame_converts_its_full_picture_once_for_all_sizes_asked_together(monkeypatch):
    import edge.preprocess.frames as frames

    av = pytest.importorskip("av")
    calls = []
    convert = frames._pyav_rgb
    monkeypatch.setattr(frames, "_pyav_rgb", lambda f: calls.append(1) or convert(f))
    frame = CameraFrame(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24"))
    small, large = frame.prepared(16, 32)
    assert len(calls) == 1 and small.shape == (16, 16, 3) and large.shape == (32, 32, 3)
    assert frame.prepared(32)[0] is large and len(calls) == 1     # asked again: the one prepared before


def test_each_thread_converts_pyav_frames_with_a_converter_of_its_own():
    """The web view converts the frame the pipeline sampled on its own thread: one shared converter (PyAV scales
    with the GIL released) could mix two pictures."""
    import threading

    import edge.preprocess.frames as frames

    av = pytest.importorskip("av")
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    converters, pictures = [], []

    def convert() -> None:
        pictures.append(frames._pyav_rgb(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        converters.append(frames._converters.reformatter)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert converters[0] is not converters[1] and all((p == rgb).all() for p in pictures)


@pytest.mark.parametrize("raw, needle", [
    (np.zeros((4, 4, 5), np.uint8), "channels"), (np.zeros((4, 4), np.int64), "dtype"), ("frame", "numpy array"),
])
def test_a_frame_no_conversion_can_use_is_refused_when_it_is_captured(raw, needle):
    with pytest.raises(PreprocessError, match=needle):
        CameraFrame(raw)


def test_prepare_and_normalize_frame():
    frame = np.full((240, 320, 3), 128, np.uint8)
    small = prepare_frame(frame, CFG)
    assert small.shape == (CFG.frame_size, CFG.frame_size, 3) and small.dtype == np.uint8
    x = normalize_frame(small, CFG)
    assert x.shape == (3, CFG.frame_size, CFG.frame_size) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (128 / 255 - np.array(CFG.mean)) / np.array(CFG.std)
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-5)
    assert to_gray(small).shape == (CFG.frame_size, CFG.frame_size)
    with pytest.raises(PreprocessError):
        prepare_frame(np.zeros((0, 0, 3), np.uint8), CFG)


def test_flow_to_model_input_clips_and_scales():
    flow = np.zeros((4, 4, 2), np.float32)
    flow[0, 0] = (100.0, -2.0)
    x = flow_to_model_input(flow, CFG)
    assert x.shape == (2, 4, 4) and x.dtype == np.float32
    assert x[0, 0, 0] == 1.0 and x[1, 0, 0] == pytest.approx(-2.0 / CFG.flow.clip_px)
    with pytest.raises(PreprocessError):
        flow_to_model_input(np.zeros((4, 4)), CFG)


def test_config_round_trip_and_unknown_key():
    cfg = PreprocessConfig(frame_size=32, flow=FlowConfig(backend="torch", params={"iterations": 2}))
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        PreprocessConfig.from_dict({"frame_sise": 32})
    with pytest.raises(ConfigError, match="frame_size"):
        PreprocessConfig.from_dict({"frame_size": "64"})


@pytest.mark.parametrize("data", [{"flow": {"clip_px": 0.0}}, {"flow": {"scale": 1.5}}, {"n_fft": 0},
                                  {"n_fft": 32000}, {"hop_length": -1}])
def test_config_rejects_values_that_break_preprocessing(data):
    with pytest.raises(ConfigError):
        PreprocessConfig.from_dict(data)


# ---- audio --------------------------------------------------------------------------------------------------

def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resample_keeps_a_sine_at_its_frequency(rate):
    t = np.arange(rate) / rate                           # 1 s
    sine = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out = resample(sine, rate, 16000)
    assert out.dtype == np.float32 and out.size == 16000
    assert _peak_hz(out, 16000) == pytest.approx(440.0, abs=2.0)
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_mixdown_stereo_and_integer_formats():
    stereo = np.stack([np.ones(10), np.zeros(10)], axis=1).astype(np.float32)
    np.testing.assert_allclose(mixdown(stereo), 0.5)
    np.testing.assert_allclose(mixdown(np.full(4, -32768, np.int16)), -1.0)
    with pytest.raises(PreprocessError):
        mixdown(np.zeros((2, 2, 2), np.float32))


def test_log_mel_shape_and_padding():
    rng = np.random.default_rng(0)
    full = log_mel(rng.normal(0, 0.1, CFG.audio_window_samples).astype(np.float32), CFG)
    assert full.shape == (CFG.n_mels, CFG.logmel_frames) == (64, 98) and full.dtype == np.float32
    short = log_mel(rng.normal(0, 0.1, 4000).astype(np.float32), CFG)   # start of a stream: left-padded
    assert short.shape == full.shape and np.isfinite(short).all()
    assert short[:, 0].max() < short[:, -1].min()                        # silence at the start


def test_window_to_model_input_any_rate_and_channels():
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, axis=1).astype(np.float32) * 0.3
    x = window_to_model_input(stereo, 44100, CFG)
    assert x.shape == (1, CFG.n_mels, CFG.logmel_frames)
    mono16 = window_to_model_input(stereo[:, 0].copy(), 44100, CFG)
    np.testing.assert_allclose(x, mono16, atol=1e-4)


@pytest.mark.parametrize("window, rate, needle", [
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.array([0.1, np.nan, 0.2], np.float32), 16000, "NaN"),
    (np.zeros(100, np.float32), 0, "positive"),
    (np.zeros(100, np.float32), -8000, "positive"),
])
def test_bad_audio_windows_are_one_sentence(window, rate, needle):
    with pytest.raises(PreprocessError, match=needle):
        window_to_model_input(window, rate, CFG)


def test_resample_rejects_zero_rate():
    with pytest.raises(PreprocessError, match="positive"):
        resample(np.zeros(10, np.float32), 0, 16000)
