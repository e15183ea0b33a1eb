"""The own-actions stage without devices: frames on its clock, takes placed at the next frame, sound where the
take's clip puts it, and the MJPEG server serving it."""
# Tier: unit, except the test marked integration (an MJPEG server read over HTTP).
from __future__ import annotations

import time
import urllib.request

import cv2
import numpy as np
import pytest

from edge.bench.mjpeg import BOUNDARY, MJPEGServer
from edge.bench.stage import Stage
from edge.moving_digits import NuisanceLevels
from edge.moving_digits.render import render_frames, render_idle


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_stage_plays_a_take_on_its_clock():
    stage = Stage(NuisanceLevels(), seed=1)
    idle = _decode(stage.frame(stage.t0 + 0.5))
    assert idle.shape == (480, 640, 3)
    small = cv2.resize(cv2.cvtColor(idle, cv2.COLOR_BGR2RGB), (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(float) - render_idle(stage.scene, 15, 1, 30)[0]).mean() < 6   # frame 15 at 0.5 s
    take = stage.play("test", 2)
    clip = take.clip
    assert clip.frame_base == int((take.shown - stage.t0) * 30 + 1e-6) and (clip.verb, clip.noun) == (2, 2)
    assert abs(take.start - take.shown - clip.lead_in_frames / 30) < 1e-9 and abs(take.end - take.start - 2.0) < 1e-9
    mid = stage.t0 + (clip.frame_base + 40) / 30 + 0.001
    shown = cv2.resize(cv2.cvtColor(_decode(stage.frame(mid)), cv2.COLOR_BGR2RGB), (128, 128),
                       interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(shown - render_frames(clip, [40])[0]).mean() < 6
    assert stage.frame(mid) is stage.frame(mid + 0.001)           # one render per frame
    s0 = round(clip.frame_base / 30 * 16000) + clip.speech_at
    with_sound = stage.audio(s0, clip.speech.size)
    assert np.allclose(with_sound, np.clip(stage.noise[s0 % stage.noise.size:][:clip.speech.size] + clip.speech, -1, 1))


@pytest.mark.integration
def test_mjpeg_server_serves_the_stage():
    stage = Stage(NuisanceLevels(), seed=2)
    server = MJPEGServer(stage).start()
    try:
        with urllib.request.urlopen(server.url, timeout=10) as r:
            assert r.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            t = time.monotonic()
            data = b""
            while data.count(b"\xff\xd9") < 10:
                data += r.read1(65536)
            assert time.monotonic() - t > 0.2              # paced at 30 fps, not as fast as possible
    finally:
        server.stop()
    first = data[data.index(b"\xff\xd8"):data.index(b"\xff\xd9") + 2]
    assert _decode(first).shape == (480, 640, 3)
