"""`run_live.py --serve [HOST:]PORT`: a live web view of the recognizer, for wearables without a screen.

The page (`web_page.html`) shows the camera view with the current prediction, one badge per modality, the
recent action events on a timeline, a capture-to-prediction latency sparkline and the summary at the end.
Endpoints (GET only; anything else is refused and counted):

    /            the page
    /state       JSON: running, latest prediction, recent events, recent latencies, summary, connections, refused
    /events      Server-Sent Events: `prediction`, `event` and `summary` messages (data: the JSONL record)
    /video.mjpg  the camera as MJPEG, one JPEG per prediction at most (a slow client gets fewer)
    /frame.jpg   the newest camera frame as one JPEG (204 before the first)

Python's own http.server (ThreadingHTTPServer) and SSE: no dependency, and the load of a few phones fits
a thread per connection. The recognizer's thread only stores a reference into `LiveState` (O(1), no lock,
no I/O); one broadcast thread turns new records into SSE bytes once for every client; each client's thread
sends the newest state when it is ready for more, so a slow client skips predictions (never a queue), and a
client that reads nothing for SOCKET_TIMEOUT_S is dropped. At most MAX_CONNECTIONS connections at once. A
connection is *pending* until it has sent a whole authorized request: it must do so within HEADER_DEADLINE_S,
one client address may hold at most MAX_PENDING_PER_ADDRESS of them, and when the server is full a new
connection pushes out the oldest pending one (503 only when every slot serves an authorized stream), so slow or
idle connections cannot starve a token holder. HTTP/0.9 requests are refused. A bind off loopback needs an
access token on every request (`?token=` or `Authorization: Bearer`); on loopback, requests naming another
host (DNS rebinding) are refused.
Nothing a client sends reaches the file system or the pipeline: paths are matched against a fixed table.
"""
from __future__ import annotations

import collections
import errno
import hmac
import ipaddress
import json
import re
import secrets
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import cv2

from edge.errors import EdgeError
from edge.live.console import warn
from edge.preprocess import CameraFrame

PAGE = Path(__file__).with_name("web_page.html")
DEFAULT_HOST = "127.0.0.1"
MAX_CONNECTIONS = 64        # at once, all clients together (a page holds 2: /events and /video.mjpg)
EVENTS_KEPT = 50            # recent action events in /state and replayed to a new /events client
LATENCIES_KEPT = 240        # recent capture-to-prediction latencies (30 s at 8 predictions/s)
MAX_JPEG_FPS = 10.0         # camera JPEG encodes per second, shared by every client
JPEG_QUALITY = 80
SOCKET_TIMEOUT_S = 10.0     # a client that sends no request or reads nothing this long is dropped
HEADER_DEADLINE_S = 5.0     # a new connection's whole request line and headers must arrive within this
MAX_PENDING_PER_ADDRESS = 16  # connections one address may hold before they have sent an authorized request
KEEPALIVE_S = 15.0          # an SSE comment this often keeps idle proxies from closing /events
LINGER_S = 2.0              # at the end, how long connected clients get to receive the summary
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,128}")
BOUNDARY = "karmmaframe"


class ServeError(EdgeError):
    """A --serve request that cannot be met (one sentence)."""


def parse_serve(spec: str) -> tuple[str, int]:
    """'[HOST:]PORT' -> (host, port); the host defaults to 127.0.0.1, IPv6 goes in brackets ([::1]:8080)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ServeError(f"--serve takes [HOST:]PORT with a port from 0 to 65535 (e.g. 8080 or 0.0.0.0:8080), "
                         f"got {spec!r}.")
    return host, int(port)


def _resolve(host: str, port: int) -> tuple[int, str]:
    """(address family, numeric address) of a --serve host; one sentence when it names nothing."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise ServeError(f"--serve host {host!r} is not an address or a name this machine can resolve.") from None
    return family, addr[0]


class LiveState:
    """What the view shows. The pipeline's thread writes it through `record` (O(1) stores, no lock, no I/O);
    server threads read it. `frame` returns the newest camera frame the recognizer sampled, or None."""

    def __init__(self) -> None:
        self.seq = 0
        self.prediction: tuple[int, dict] | None = None
        self.events: collections.deque[tuple[int, dict]] = collections.deque(maxlen=EVENTS_KEPT)
        self.latency: collections.deque[tuple[float, float]] = collections.deque(maxlen=LATENCIES_KEPT)
        self.summary: tuple[int, dict] | None = None
        self.frame: Callable[[], CameraFrame | None] = lambda: None
        self.changed = threading.Event()

    def record(self, rec: dict) -> None:
        """Take one JSONL record (prediction, event or summary); other records are ignored."""
        seq = self.seq + 1
        kind = rec.get("type")
        if kind == "prediction":
            self.prediction = (seq, rec)
            if rec.get("latency_ms") is not None:
                self.latency.append((rec["t"], rec["latency_ms"]))
        elif kind == "event":
            self.events.append((seq, rec))
        elif kind == "summary":
            self.summary = (seq, rec)
        else:
            return
        self.seq = seq
        self.changed.set()


def _sse(seq: int, rec: dict) -> bytes:
    return f"id: {seq}\nevent: {rec['type']}\ndata: {json.dumps(rec)}\n\n".encode()


class WebView:
    """The server: binds at construction (so a port in use fails before the run starts), serves from threads
    of its own until `close`."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        family, address = _resolve(host, port)
        self.loopback = ipaddress.ip_address(address.split("%")[0]).is_loopback
        if token is not None and not TOKEN_CHARS.fullmatch(token):
            raise ServeError("--serve-token must be 16 to 128 characters from A-Z a-z 0-9 . _ ~ -.")
        self.generated_token = token is None and not self.loopback
        self.token = secrets.token_urlsafe(24) if self.generated_token else token
        self.page = PAGE.read_bytes()
        self.state = LiveState()
        self.refused: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self._pending: dict[socket.socket, tuple[float, str]] = {}   # not yet authorized: accepted at, address
        self._evicted: set[socket.socket] = set()   # pushed out: their slot is free, their thread still ending
        self.closing = False
        self._lock = threading.Lock()               # counters
        self._cond = threading.Condition()          # the broadcast state below
        self._head = 0                              # the newest seq broadcast
        self._log: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=EVENTS_KEPT + 1)
        self._prediction: tuple[int, bytes] | None = None
        self._cursors: dict[int, int] = {}          # per /events client: the newest seq it was sent
        self._jpeg_lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._jpeg_source: CameraFrame | None = None
        self._jpeg_t = -1.0
        try:
            self.server = _Server((address, port), family, self)
        except OSError as exc:
            raise ServeError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); "
                             + ("choose another port." if exc.errno == errno.EADDRINUSE else "check --serve.")) from None
        self.port = self.server.server_address[1]
        self.host = address
        threading.Thread(target=self.server.serve_forever, args=(0.25,), name="web-server", daemon=True).start()
        threading.Thread(target=self._broadcast, name="web-broadcast", daemon=True).start()
        threading.Thread(target=self._sweep, name="web-sweep", daemon=True).start()

    @property
    def url(self) -> str:
        """The page's address (with the token, when one is needed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def sink(self, core: Any) -> "WebSink":
        """The view as a session sink: every record, the summary at the end, and the camera frame `core` last
        sampled (converted only when a client wants one)."""
        self.state.frame = lambda: None if core.last_frame is None else core.last_frame.data
        return WebSink(self)

    def close(self) -> str | None:
        """Give connected clients up to LINGER_S to receive the summary, stop serving, and return the one
        warning about refused requests (None when there were none)."""
        deadline = time.monotonic() + LINGER_S
        while time.monotonic() < deadline and self._clients_behind():
            time.sleep(0.02)
        with self._cond:
            self.closing = True
            self._cond.notify_all()
        self.state.changed.set()
        self.server.shutdown()
        self.server.server_close()
        if not self.refused:
            return None
        n = sum(self.refused.values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.refused.items()))
        return f"the web view refused {n} request(s) ({kinds})."

    # ---- server side ----
    def count(self, what: str) -> None:
        with self._lock:
            self.refused[what] += 1

    def admit(self, sock: socket.socket, address: str) -> bool:
        """Take a connection slot for a new connection, first pushing out the oldest pending connection of its
        address (over MAX_PENDING_PER_ADDRESS) or of all (when every slot is taken); False: every slot serves an
        authorized stream."""
        with self._lock:
            mine = [s for s, (_, a) in self._pending.items() if a == address]
            if len(mine) >= MAX_PENDING_PER_ADDRESS:
                self._evict(min(mine, key=lambda s: self._pending[s][0]))
            if self.connections >= MAX_CONNECTIONS and self._pending:
                self._evict(min(self._pending, key=lambda s: self._pending[s][0]))
            if self.connections >= MAX_CONNECTIONS:
                return False
            self.connections += 1
            self._pending[sock] = (time.monotonic(), address)
            return True

    def authorized(self, sock: socket.socket) -> None:
        """The connection sent a whole authorized request: it keeps its slot."""
        with self._lock:
            self._pending.pop(sock, None)

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._pending.pop(sock, None)
            if sock in self._evicted:
                self._evicted.discard(sock)         # its slot was freed when it was pushed out
            else:
                self.connections -= 1

    def _evict(self, sock: socket.socket) -> None:
        """End a pending connection (lock held) and free its slot now; its thread sees the socket close and ends."""
        self._pending.pop(sock, None)
        self._evicted.add(sock)
        self.connections -= 1
        self.refused["pending connections dropped"] += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _sweep(self) -> None:
        """Drop pending connections older than HEADER_DEADLINE_S (a request sent a byte at a time)."""
        while not self.closing:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                for sock in [s for s, (t, _) in self._pending.items() if now - t > HEADER_DEADLINE_S]:
                    self._evict(sock)

    def _broadcast(self) -> None:
        """Turn new records into SSE bytes once, for every client, and wake the clients."""
        sent = 0
        state = self.state
        while not self.closing:
            state.changed.wait()
            state.changed.clear()
            # Records are stored before their seq is published: what is read here may be newer than `seq`,
            # never older, so the head is the newest seq seen.
            seq = state.seq
            prediction = state.prediction
            fresh = [item for item in (*state.events, state.summary) if item is not None and item[0] > sent]
            messages = [(s, _sse(s, rec)) for s, rec in sorted(fresh, key=lambda item: item[0])]
            with self._cond:
                self._log.extend(messages)
                if prediction is not None and prediction[0] > sent:
                    self._prediction = (prediction[0], _sse(*prediction))
                self._head = sent = max([seq, *(s for s, _ in messages)]
                                        + ([prediction[0]] if prediction is not None else []))
                self._cond.notify_all()

    def wait_news(self, after: int, messages: bool = True) -> tuple[int, list[bytes]] | None:
        """Block until something newer than seq `after` is broadcast (or KEEPALIVE_S passed); returns the new
        head and (with `messages`) what to send: the kept events and summary after it and the newest
        prediction only. None: the view is closing."""
        with self._cond:
            self._cond.wait_for(lambda: self._head > after or self.closing, KEEPALIVE_S)
            if self.closing:
                return None
            if not messages:
                return self._head, []
            items = [item for item in self._log if item[0] > after]
            if self._prediction is not None and self._prediction[0] > after:
                items.append(self._prediction)
            return max(self._head, after), [data for _, data in sorted(items, key=lambda item: item[0])]

    def mark_sent(self, client: int, seq: int | None) -> None:
        """Record how far an /events client got (None: it left)."""
        with self._lock:
            if seq is None:
                self._cursors.pop(client, None)
            else:
                self._cursors[client] = seq

    def _clients_behind(self) -> bool:
        with self._lock:
            return min(self._cursors.values(), default=self.state.seq) < self.state.seq

    def jpeg(self) -> bytes | None:
        """The newest camera frame as JPEG, converted and encoded here (not in the recognizer), once per frame
        and at most MAX_JPEG_FPS times a second for all clients together."""
        with self._jpeg_lock:
            now = time.monotonic()
            frame = self.state.frame()
            if frame is not None and frame is not self._jpeg_source and now - self._jpeg_t >= 1.0 / MAX_JPEG_FPS:
                bgr = cv2.cvtColor(frame.rgb(), cv2.COLOR_RGB2BGR)
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self._jpeg, self._jpeg_source, self._jpeg_t = buf.tobytes(), frame, now
            return self._jpeg

    def snapshot(self) -> dict:
        """The /state document."""
        state = self.state
        prediction, summary = state.prediction, state.summary
        with self._lock:
            refused = dict(self.refused)
        return {"running": summary is None and not self.closing,
                "prediction": prediction[1] if prediction else None,
                "events": [rec for _, rec in list(state.events)],
                "latency": [list(item) for item in list(state.latency)],
                "summary": summary[1] if summary else None,
                "connections": self.connections, "refused": refused}

    def authorize(self, handler: BaseHTTPRequestHandler, query: str) -> int | None:
        """None when the request may be served, else the status to refuse it with."""
        if self.loopback and (host := handler.headers.get("Host")) is not None:
            try:
                name = urlsplit(f"//{host}").hostname
            except ValueError:  # e.g. an unclosed IPv6 bracket
                return 400
            if name not in ("127.0.0.1", "localhost", "::1"):
                return 403  # a page elsewhere reaching this port through a DNS name (rebinding)
        if self.token is None:
            return None
        given = parse_qs(query).get("token", [None])[0]
        auth = handler.headers.get("Authorization", "")
        if given is None and auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip()
        if given is None:
            return 401
        return None if hmac.compare_digest(given.encode(), self.token.encode()) else 403


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection cap (503 from the accepting thread, no thread started), silent
    error handling (counted, never printed) and no reverse DNS lookup at bind time."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], family: int, view: WebView) -> None:
        self.address_family = family
        self.view = view
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's, which looks the host's name up (DNS)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self.view.admit(request, client_address[0]):
            self.view.count("503 too many connections")
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.view.release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.view.count("connection errors")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "karmma-web"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def parse_request(self) -> bool:
        """http.server's parsing, minus HTTP/0.9 (a request line without a version is answered without a status
        line): refused with 400."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"          # so the refusal itself has a status line
            self.send_error(400, "HTTP/0.9 is not served")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        view = self.server.view
        url = urlsplit(self.path)
        refusal = view.authorize(self, url.query)
        if refusal is not None:
            self.send_error(refusal)
            return
        view.authorized(self.connection)
        route = ROUTES.get(url.path)
        if route is None:
            self.send_error(404)
            return
        try:
            route(self, view)
        except OSError:  # the client left, or stopped reading for SOCKET_TIMEOUT_S: its thread ends here
            self.close_connection = True

    def refuse_method(self) -> None:
        """Every method but GET: 405, the body (if small) read and dropped so the answer is not reset."""
        length = self.headers.get("Content-Length", "0")
        if length.isdigit() and int(length) <= 65536:
            self.rfile.read(int(length))
        self.close_connection = True
        self.server.view.count("405")
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"405 only GET is served\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = refuse_method  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.server.view.count(str(code))
        self.close_connection = True
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        """Nothing is printed per request; refusals are counted (WebView.refused)."""

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        if "timed out" in format:
            self.server.view.count("timeouts")

    # ---- routes ----
    def _reply(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream_headers(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.wfile.flush()

    def page(self, view: WebView) -> None:
        self._reply(view.page, "text/html; charset=utf-8")

    def state(self, view: WebView) -> None:
        self._reply(json.dumps(view.snapshot()).encode(), "application/json")

    def frame(self, view: WebView) -> None:
        jpeg = view.jpeg()
        if jpeg is None:
            self.send_response(204)
            self.end_headers()
            return
        self._reply(jpeg, "image/jpeg")

    def events(self, view: WebView) -> None:
        """SSE: the kept events, the newest prediction and the summary at once, then whatever is new."""
        self._stream_headers("text/event-stream")
        client, sent = id(self), 0
        view.mark_sent(client, sent)
        try:
            while (news := view.wait_news(sent)) is not None:
                head, messages = news
                self.wfile.write(b"".join(messages) if messages else b": keep-alive\n\n")
                sent = head
                view.mark_sent(client, sent)
        finally:
            view.mark_sent(client, None)

    def video(self, view: WebView) -> None:
        """MJPEG: the newest frame after each broadcast, when it changed; a slow client gets fewer frames."""
        self._stream_headers(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        last, seen = None, 0
        while (news := view.wait_news(seen, messages=False)) is not None:
            seen = news[0]
            jpeg = view.jpeg()
            if jpeg is not None and jpeg is not last:
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode() + jpeg + b"\r\n")
                last = jpeg


ROUTES: dict[str, Callable[[_Handler, WebView], None]] = {
    "/": _Handler.page, "/state": _Handler.state, "/events": _Handler.events,
    "/video.mjpg": _Handler.video, "/frame.jpg": _Handler.frame,
}


class WebSink:
    """Feeds a WebView from a session: each record as it is made, then the summary (the caller closes the view,
    which lets open pages receive it)."""

    def __init__(self, view: WebView) -> None:
        self.view = view

    def __call__(self, record: dict) -> None:
        self.view.state.record(record)

    def close(self, summary: dict) -> None:
        self.view.state.record(summary)


def start_view(spec: str | None, token: str | None = None) -> WebView | None:
    """`--serve SPEC [--serve-token T]`: bind and start serving, print the page's address once (with the
    generated token, when the bind is off loopback); None without --serve."""
    if spec is None:
        if token is not None:
            raise ServeError("--serve-token needs --serve [HOST:]PORT.")
        return None
    view = WebView(*parse_serve(spec), token=token)
    where = " (every interface: use this machine's address)" if ipaddress.ip_address(
        view.host.split("%")[0]).is_unspecified else ""
    print(f"web view: {view.url}{where}", flush=True)
    return view


def close_view(view: WebView | None) -> None:
    """End --serve (nothing without it); refused requests, if any, are one warning with their count."""
    if view is not None and (message := view.close()) is not None:
        warn(message)
