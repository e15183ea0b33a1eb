"""The live web view (`--serve`) without a browser: endpoints, the token rule, bad requests, the recognizer going on."""
# Tier: unit, except the tests marked integration (HTTP servers on sockets, run_live.py in a subprocess).
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from edge.live.web import MAX_CONNECTIONS, ServeError, WebView, close_view, parse_serve
from edge.preprocess import CameraFrame

REPO = Path(__file__).resolve().parent.parent
PREDICTION = {"type": "prediction", "t": 1.0, "modalities": ["V", "F"], "verb": "push-left", "noun": "3",
              "confidence": 0.8, "latency_ms": 12.5, "state": "ok", "missing": {"A": "silent"}}
EVENT = {"type": "event", "start": 0.5, "end": 1.0, "verb": "hold", "noun": "3", "confidence": 0.7,
         "modalities": ["V", "F"]}


@pytest.fixture
def view():
    v = WebView("127.0.0.1", 0)
    frame = CameraFrame(np.full((48, 64, 3), 128, np.uint8))
    v.state.frame = lambda: frame
    v.state.record(EVENT)
    v.state.record(PREDICTION)
    yield v
    if not v.closing:
        v.close()


def get(view: WebView, path: str, headers: dict | None = None, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(view.host, view.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def raw(view: WebView, data: bytes) -> bytes:
    """Send raw bytes, return what comes back (b'' for a reset: a refused request)."""
    with socket.create_connection((view.host, view.port), timeout=5) as s:
        try:
            s.sendall(data)
            return s.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def flood(port: int, n: int) -> list[bytes]:
    """n connections open at once, each then asking for /events; what each got back (b'': reset or refused)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            socks.append(None)
    answers = []
    for s in socks:
        try:
            s.sendall(b"GET /events HTTP/1.0\r\n\r\n")
            answers.append(s.recv(4096))
        except (OSError, AttributeError):
            answers.append(b"")
    for s in socks:
        if s is not None:
            s.close()
    return answers


def test_serve_specs_parse_and_bad_ones_are_one_sentence():
    assert parse_serve("8080") == ("127.0.0.1", 8080)
    assert parse_serve("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_serve("[::1]:8080") == ("::1", 8080)
    for bad in ("", "web", "70000", "host:", ":80", "1.2.3.4:-1"):
        with pytest.raises(ServeError, match=r"^--serve takes \[HOST:\]PORT .*\.$"):
            parse_serve(bad)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["bgr", "pyav"])
def test_a_frame_as_a_camera_or_a_media_file_delivers_it_is_served_in_its_colours(view, kind):
    """An OpenCV camera's BGR array and a decoder's PyAV frame (a media file as --camera) both reach the page,
    converted on the server's thread, red staying red."""
    av = pytest.importorskip("av")
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200
    frame = CameraFrame(rgb[..., ::-1].copy(), bgr=True) if kind == "bgr" else \
        CameraFrame(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    view.state.frame = lambda: frame
    status, headers, body = get(view, "/frame.jpg")
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)       # BGR
    assert status == 200 and picture.shape == (48, 64, 3)
    assert picture[..., 2].mean() > 180 and picture[..., :2].mean() < 20


@pytest.mark.integration
def test_page_state_frame_and_event_stream(view):
    status, headers, body = get(view, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"EventSource" in body
    status, _, body = get(view, "/state")
    state = json.loads(body)
    assert status == 200 and state["running"] and state["prediction"]["verb"] == "push-left"
    assert state["events"] == [EVENT] and state["latency"] == [[1.0, 12.5]]
    status, headers, body = get(view, "/frame.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    conn = http.client.HTTPConnection(view.host, view.port, timeout=5)
    conn.request("GET", "/events")
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("Content-Type") == "text/event-stream"
    first = [res.fp.readline() for _ in range(8)]  # the kept event, then the newest prediction, at once
    assert first[1] == b"event: event\n" and first[5] == b"event: prediction\n"
    view.state.record({**PREDICTION, "t": 1.125})
    lines = [res.fp.readline() for _ in range(4)]
    assert lines[1] == b"event: prediction\n" and json.loads(lines[2][len(b"data: "):])["t"] == 1.125
    view.state.record({"type": "summary", "counters": {}})
    assert [res.fp.readline() for _ in range(4)][1] == b"event: summary\n"
    conn.close()


@pytest.mark.integration
def test_bad_requests_get_their_status_and_one_counted_warning(view, capfd):
    assert get(view, "/nope")[0] == 404
    assert get(view, "/../../etc/passwd")[0] == 404
    assert get(view, "/state/..%2f..%2fetc")[0] == 404
    status, headers, _ = get(view, "/state", method="POST", body=b"x=1")
    assert status == 405 and headers["Allow"] == "GET"
    assert get(view, "/state", headers={"Host": "attacker.example"})[0] == 403  # DNS rebinding
    assert get(view, "/state", headers={"Host": "[::1"})[0] == 400
    answer = raw(view, b"GET /state HTTP/1.0\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.0 431")
    answers = flood(view.port, 200)        # 200 connections at once from one address, then their requests
    ok = sum(a.startswith(b"HTTP/1.0 200") for a in answers)
    busy = sum(a.startswith(b"HTTP/1.0 503") for a in answers)
    # idle connections push each other out (at most MAX_PENDING_PER_ADDRESS wait per address): resets, not 503s
    assert ok <= MAX_CONNECTIONS and ok + busy + answers.count(b"") == 200 and answers.count(b"") > 0
    for _ in range(20):  # predictions go on: the streams' threads notice at their next writes that clients left
        view.state.record(PREDICTION)
        time.sleep(0.05)
    assert view.connections == 0
    assert get(view, "/state")[0] == 200  # still serving
    assert capfd.readouterr().err == ""  # nothing printed per request
    close_view(view)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the web view refused ") and "404: 3" in err[0]
    assert "400: 1" in err[0]
    assert "405: 1" in err[0] and "403: 1" in err[0] and "pending connections dropped" in err[0]


@pytest.mark.integration
def test_off_loopback_every_request_needs_the_token():
    v = WebView("0.0.0.0", 0)
    try:
        assert v.generated_token and len(v.token) >= 16 and f"?token={v.token}" in v.url
        assert get(v, "/state")[0] == 401
        assert get(v, "/nope")[0] == 401  # not even which paths exist
        assert get(v, "/state?token=" + "x" * 32)[0] == 403
        assert get(v, f"/state?token={v.token}")[0] == 200
        assert get(v, "/", headers={"Authorization": f"Bearer {v.token}"})[0] == 200
        assert get(v, "/state", headers={"Host": "phone.example"})[0] == 401  # no Host rule off loopback
    finally:
        v.close()
    given = WebView("127.0.0.1", 0, token="a-given-token-of-24-chars")
    try:
        assert not given.generated_token
        assert get(given, "/state")[0] == 401 and get(given, "/state?token=a-given-token-of-24-chars")[0] == 200
    finally:
        given.close()
    with pytest.raises(ServeError, match="16 to 128 characters"):
        WebView("127.0.0.1", 0, token="short")


def _run_live(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.integration
def test_bad_serve_values_and_a_port_in_use_are_one_sentence():
    res = _run_live("--demo", "--serve", "localhost:http")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: --serve takes [HOST:]PORT with a port from 0 to 65535 (e.g. 8080 or 0.0.0.0:8080), "
        "got 'localhost:http'."]
    res = _run_live("--camera", "none", "--mic", "none", "--serve-token", "x" * 20)
    assert res.returncode == 2 and res.stderr.strip() == "error: --serve-token needs --serve [HOST:]PORT."
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _run_live("--camera", "0", "--serve", str(port))
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"error: cannot serve on 127.0.0.1:{port} (Address already in use); choose another port."]


@pytest.mark.integration
def test_the_recognizer_keeps_predicting_through_bad_requests_on_loopback_only(tmp_path):
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--demo", "--serve", "0", "--duration", "7",
                             "--jsonl", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("web view: http://127.0.0.1:"), line
        port = int(line.split(":")[-1].strip("/\n"))
        process = psutil.Process(proc.pid)
        conns = process.net_connections("inet") if hasattr(process, "net_connections") else process.connections("inet")
        listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
        v = WebView.__new__(WebView)  # only for host/port in the helpers
        v.host, v.port = "127.0.0.1", port
        deadline = time.monotonic() + 30
        while json.loads(get(v, "/state")[2])["prediction"] is None:
            assert time.monotonic() < deadline, "no prediction"
            time.sleep(0.2)
        t_bad = json.loads(get(v, "/state")[2])["prediction"]["t"]
        assert get(v, "/nope")[0] == 404 and get(v, "/state", method="POST", body=b"{}")[0] == 405
        assert flood(port, 200).count(b"") > 0          # pushed out while idle; the recognizer goes on
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    preds = [json.loads(x) for x in out.read_text().splitlines() if '"prediction"' in x]
    after = [p for p in preds if p["t"] > t_bad and p["verb"] is not None]
    assert len(after) >= 8  # at 8 predictions/s, well over a second of predictions after the bad requests
    summary = next(json.loads(x) for x in out.read_text().splitlines() if '"summary"' in x)
    assert summary["counters"].get("late_ticks", 0) == 0
    warnings = [x for x in stderr.splitlines() if x.startswith("warning: the web view")]
    assert len(warnings) == 1 and "404: 1" in warnings[0] and "405: 1" in warnings[0], stderr


@pytest.mark.integration
def test_a_client_that_stops_reading_is_dropped_and_the_others_get_the_newest(view, monkeypatch):
    monkeypatch.setattr("edge.live.web._Handler.timeout", 1.0)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((view.host, view.port))
    stalled.sendall(b"GET /events HTTP/1.0\r\n\r\n")
    try:
        while view.connections == 0:  # accepted
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        n = 0
        while view.connections and time.monotonic() < deadline:  # 1 MB predictions until its thread gives up
            n += 1
            view.state.record({**PREDICTION, "t": float(n), "pad": "x" * (1 << 20)})
            time.sleep(0.02)
        assert view.connections == 0, "the stalled client still holds its connection"
        assert json.loads(get(view, "/state")[2])["prediction"]["t"] == float(n)  # others get the newest
    finally:
        stalled.close()


@pytest.mark.parametrize("per_address", [16, MAX_CONNECTIONS], ids=["one-address-cap", "server-full"])
@pytest.mark.integration
def test_64_slow_connections_do_not_keep_a_token_holder_from_the_page(per_address, monkeypatch):
    """A client holds 64 connections that never finish their headers (slowloris) on a token-protected view: the
    token holder still gets the page at once, whether the per-address cap or a full server pushes the oldest
    pending connection out, and the slow ones are dropped by the header deadline."""
    from edge.live import web
    from edge.live.web import HEADER_DEADLINE_S

    monkeypatch.setattr(web, "MAX_PENDING_PER_ADDRESS", per_address)
    v = WebView("127.0.0.1", 0, token="a-given-token-of-24-chars")
    slow = []
    try:
        for _ in range(MAX_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", v.port), timeout=5)
            s.sendall(b"GET /state HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
        time.sleep(0.2)
        start = time.monotonic()
        assert get(v, "/?token=a-given-token-of-24-chars")[0] == 200
        assert time.monotonic() - start < 2.0
        time.sleep(HEADER_DEADLINE_S + 1.0)
        for s in slow:                              # each was pushed out or dropped at the deadline: closed
            try:
                s.sendall(b"a")
                s.settimeout(2)
                assert s.recv(10) == b""
            except OSError:
                pass
        assert v.connections == 0
        assert v.refused["pending connections dropped"] >= MAX_CONNECTIONS
    finally:
        for s in slow:
            s.close()
        v.close()


@pytest.mark.integration
def test_http_0_9_is_refused_with_a_status_line(view):
    assert raw(view, b"GET /\r\n\r\n").startswith(b"HTTP/1.0 400")


@pytest.mark.integration
def test_when_every_slot_serves_an_authorized_stream_a_new_connection_gets_503(view):
    streams = []
    try:
        for _ in range(MAX_CONNECTIONS):
            s = socket.create_connection((view.host, view.port), timeout=5)
            s.sendall(b"GET /events HTTP/1.0\r\n\r\n")
            assert s.recv(15).startswith(b"HTTP/1.0 200")
            streams.append(s)
        assert raw(view, b"GET /state HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 503")
    finally:
        for s in streams:
            s.close()
