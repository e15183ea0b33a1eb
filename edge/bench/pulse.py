"""A private PulseAudio server as a virtual microphone for benchmarks: run as a user process with its own
XDG_RUNTIME_DIR, a null sink `virt` whose monitor is the default source, so whatever is played into the sink is
what PortAudio's `default` device records. `PcmFeed` plays a live stream into it (pacat, raw 16-bit mono).
Needs `pulseaudio pulseaudio-utils libasound2-plugins`."""
from __future__ import annotations

import fcntl
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

TOOLS = ("pulseaudio", "pactl", "pacat", "parec")
F_SETPIPE_SZ = 1031    # Linux fcntl: set a pipe's buffer size
PLAYER_NICE = -11      # PulseAudio's own high priority
_QUIET = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def missing_tool() -> str | None:
    """The first PulseAudio tool that is not installed, else None."""
    return next((t for t in TOOLS if shutil.which(t) is None), None)


class PulseServer:
    """Start with `start()`, stop with `close()`; `env` is the environment every client (the recorder, run_live.py,
    pacat) needs to reach this server."""

    def __init__(self, runtime_dir: Path) -> None:
        tool = missing_tool()
        if tool is not None:
            raise EdgeError(f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins).")
        runtime_dir = runtime_dir.resolve()   # PulseAudio refuses a relative XDG_RUNTIME_DIR ("Daemon startup failed")
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime_dir), HOME=str(runtime_dir))

    def start(self) -> "PulseServer":
        for cmd in (["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--load=module-native-protocol-unix",
                     "--load=module-null-sink sink_name=virt"], ["pactl", "set-default-source", "virt.monitor"]):
            try:
                subprocess.run(cmd, env=self.env, check=True, timeout=30, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            except subprocess.CalledProcessError as exc:
                why = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit status {exc.returncode}"]
                raise EdgeError(f"could not start the private PulseAudio server ({cmd[0]}: {why[0]}).") from None
            except subprocess.TimeoutExpired:
                raise EdgeError(f"the private PulseAudio server did not start within 30 s ({cmd[0]}).") from None
        return self

    def wait_for_audio(self, timeout_s: float = 10.0) -> float:
        """Wait until the monitor delivers audio to a fresh capture client (a new null sink renders its first block
        of up to 2 s before it adapts to a low latency); returns that moment (time.monotonic())."""
        probe = subprocess.Popen(["parec", "--device=virt.monitor", "--latency-msec=20", "--raw"], env=self.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            ready, _, _ = select.select([probe.stdout], [], [], timeout_s)
            if not (ready and probe.stdout.read1(64)):
                raise EdgeError(f"the PulseAudio monitor delivered no audio within {timeout_s:g} s.")
            return time.monotonic()
        finally:
            probe.kill()
            probe.wait()

    def close(self) -> None:
        subprocess.run(["pulseaudio", "--kill"], env=self.env, timeout=30, **_QUIET)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and subprocess.run(["pulseaudio", "--check"], env=self.env).returncode == 0:
            time.sleep(0.02)


class PcmFeed:
    """float32 mono blocks written into the sink `virt` through pacat with a small buffer (latency_ms)."""

    def __init__(self, server: PulseServer, rate: int, latency_ms: int = 30) -> None:
        self.proc = subprocess.Popen(["pacat", "--playback", "--raw", "--format=s16le", f"--rate={rate}", "--channels=1",
                                      f"--latency-msec={latency_ms}", "--device=virt"], env=server.env,
                                     stdin=subprocess.PIPE, **_QUIET)
        try:   # a microphone is hardware a busy CPU does not starve: pacat at PulseAudio's own priority where allowed
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, PLAYER_NICE)
        except OSError:
            pass
        try:   # a 4 KiB pipe (128 ms at 16 kHz): a default 64 KiB one fills while the sink idles and delays all by 2 s
            fcntl.fcntl(self.proc.stdin.fileno(), F_SETPIPE_SZ, 4096)
        except OSError:
            pass

    def write(self, block: np.ndarray) -> None:
        self.proc.stdin.write((np.clip(block, -1, 1) * 32767).astype("<i2").tobytes())
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.kill()
        self.proc.wait()
