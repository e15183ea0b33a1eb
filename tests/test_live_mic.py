"""The microphone source against a stand-in sounddevice module (this machine has no input device; issue 7 adds
a real PulseAudio device): rate and channel fallback, mixdown, bounded block queue, one-sentence failures."""
# Tier: unit.
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from edge.live.devices import MicSource
from edge.live.sources import SourceError, SourceLost
from edge.preprocess import PreprocessConfig, window_to_model_input


class FakeStream:
    def __init__(self, device, channels, samplerate, dtype, blocksize, callback):
        self.channels, self.samplerate, self.blocksize, self.callback = channels, samplerate, blocksize, callback
        self.active = False

    def start(self):
        self.active = True

    def abort(self):
        self.active = False

    def close(self):
        pass


def fake_sounddevice(devices: list[dict], default_input: int) -> types.ModuleType:
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = type("PortAudioError", (Exception,), {})
    sd.default = types.SimpleNamespace(device=[default_input, -1])
    sd.streams = []

    def query_devices(device=None, kind=None):
        for d in devices:
            if device in (d["index"], d["name"]) and d["max_input_channels"] > 0:
                return d
        raise ValueError(f"no input device {device!r}")

    def check_input_settings(device, channels, samplerate, dtype):
        d = query_devices(device)
        if samplerate != d["default_samplerate"] or channels != d["max_input_channels"]:
            raise sd.PortAudioError("Invalid sample rate")

    def input_stream(**kw):
        stream = FakeStream(**kw)
        sd.streams.append(stream)
        return stream

    sd.query_devices, sd.check_input_settings, sd.InputStream = query_devices, check_input_settings, input_stream
    return sd


STEREO_48K = {"index": 3, "name": "USB headset", "max_input_channels": 2, "default_samplerate": 48000.0}


def test_a_48k_stereo_only_microphone_is_opened_as_it_is_and_mixed_down(monkeypatch):
    sd = fake_sounddevice([STEREO_48K], default_input=3)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = MicSource("default", 16000, block_s=0.02)
    mic.open()
    stream = sd.streams[-1]
    assert (mic.rate, stream.samplerate, stream.channels) == (48000, 48000, 2)
    block = np.stack([np.full(960, 0.5, np.float32), np.full(960, -0.1, np.float32)], axis=1)
    stream.callback(block, 960, None, types.SimpleNamespace(input_overflow=False))
    t, mono = mic.read()
    assert mono.shape == (960,) and np.allclose(mono, 0.2)
    # The consumer resamples each window from the device rate: one second at 48 kHz is one model window.
    cfg = PreprocessConfig()
    assert window_to_model_input(np.zeros(48000, np.float32), mic.rate, cfg).shape == (1, cfg.n_mels,
                                                                                          cfg.logmel_frames)


def test_the_block_queue_is_bounded_and_counts_what_it_drops(monkeypatch):
    sd = fake_sounddevice([STEREO_48K], default_input=3)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = MicSource(3, 16000, block_s=0.02)
    mic.open()
    block = np.zeros((960, 2), np.float32)
    for _ in range(200):
        sd.streams[-1].callback(block, 960, None, types.SimpleNamespace(input_overflow=False))
    assert mic.dropped == 200 - mic._blocks.maxlen


def test_a_stopped_microphone_is_lost_and_missing_ones_are_one_sentence(monkeypatch):
    sd = fake_sounddevice([STEREO_48K], default_input=3)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = MicSource("USB headset", 16000, timeout_s=0.05)
    mic.open()
    sd.streams[-1].abort()
    with pytest.raises(SourceLost, match="stopped"):
        mic.read()
    with pytest.raises(SourceError, match="no microphone named or numbered 'studio'"):
        MicSource("studio", 16000).open()
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice([], default_input=-1))
    with pytest.raises(SourceError, match="no input device.*--demo"):
        MicSource("default", 16000).open()
