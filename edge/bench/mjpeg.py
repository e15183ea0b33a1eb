"""A small MJPEG-over-HTTP camera for tests and benchmarks: serves JPEG frames as multipart/x-mixed-replace at
a frame rate, the way wearable prototypes stream their camera over Wi-Fi.

What it serves is a frame source: any object with `fps` and `frame(t) -> bytes` (the JPEG to show at monotonic
time t), so a bench can change the picture while clients stay connected (`edge.bench.stage.Stage`); `JpegLoop`
loops a media file's frames. `python -m edge.bench.mjpeg FILE [--port N] [--host H]` serves a file and prints
the stream URL; it binds 127.0.0.1 unless --host says otherwise. Tests start it as a process and stop it to make
the network camera disappear.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import cv2

BOUNDARY = "karmmaframe"


class FrameSource(Protocol):
    fps: float

    def frame(self, t: float) -> bytes:
        """The JPEG to show at monotonic time t."""


class JpegLoop:
    """Fixed JPEGs looped at `fps` from the moment the loop is made."""

    def __init__(self, jpegs: list[bytes], fps: float) -> None:
        self.jpegs, self.fps, self.t0 = jpegs, fps, time.monotonic()

    def frame(self, t: float) -> bytes:
        return self.jpegs[int((t - self.t0) * self.fps) % len(self.jpegs)]


def load_jpegs(path: Path, max_frames: int = 300, quality: int = 80) -> tuple[list[bytes], float]:
    """The file's first `max_frames` video frames as JPEG bytes, and its frame rate (PyAV decodes)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        jpegs = []
        for frame in container.decode(stream):
            ok, buf = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                jpegs.append(buf.tobytes())
            if len(jpegs) >= max_frames:
                break
    if not jpegs:
        raise ValueError(f"{path} has no decodable video frames.")
    return jpegs, fps


def make_handler(source: FrameSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            start = time.monotonic()
            i = 0
            try:
                while True:
                    jpeg = source.frame(time.monotonic())
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    i += 1
                    delay = start + i / source.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, format: str, *args) -> None:  # quiet: one line per request would flood the test log
            return

    return Handler


class MJPEGServer:
    """Serves `source` on http://host:port/stream.mjpg from a background thread (port 0: any free one)."""

    def __init__(self, source: FrameSource, host: str = "127.0.0.1", port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer((host, port), make_handler(source))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/stream.mjpg"

    def start(self) -> "MJPEGServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.bench.mjpeg", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="media file whose video is served")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    p.add_argument("--max-frames", type=int, default=300, help="frames kept in memory and looped")
    args = p.parse_args(argv)
    try:
        jpegs, fps = load_jpegs(args.file, args.max_frames)
        server = MJPEGServer(JpegLoop(jpegs, fps), args.host, args.port)
    except Exception as exc:  # any unreadable file: one line, no traceback
        print(f"error: cannot serve {args.file} ({exc}).", file=sys.stderr)
        return 2
    print(server.url, flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
