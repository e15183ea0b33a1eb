"""Own actions end to end on real devices: record 5 new actions from a camera and a microphone, fine-tune, run live.
With --takes DIR the camera and microphone play a folder of real takes instead (edge/bench/takes_stage.py).

The devices are real components: an MJPEG network camera (edge/bench/mjpeg.py, 640x480 at 30 fps) and a private
PulseAudio server whose null-sink monitor is PortAudio's `default` microphone (16 kHz). Both show one stage
(edge/bench/stage.py): a MovingDigits-AV scene, idle until a take plays on it. The 5 actions are new motions of
cards with new symbols and sounds (edge/moving_digits/own_actions.py) that the shipped label set does not have.

1. record: `python -m edge.record --camera URL --mic default --plan OUT/plan.yaml --out OUT/recordings --yes`;
   each time it prints "now: <prompt>", a freshly drawn take of that action (from the take's split: train takes
   and held-out val / test takes never share a voice or an image) plays on the stage. Then every kept take is
   checked against what was played (edge/bench/take_check.py: frames match the played clip at one camera delay).
2. finetune: `python -m trainer finetune --dataset recordings --data-root OUT --from BUNDLE --out OUT/ft`
   with the trainer's `finetune:` settings (--set passes overrides on; skipped with --record-only).
3. live: `run_live.py --bundle OUT/ft/bundle --camera URL --mic default --jsonl OUT/live.jsonl` while the stage
   plays one new held-out take (test split) of each action between idle gaps; per action the majority prediction
   over the predictions whose 2 s window covers at least half of it; prints `k/5 actions right`.

With --takes DIR (a folder of real takes as the recordings dataset reads it, e.g. ../shared/data/real-takes),
`--test N` takes of each action (whole groups, drawn by --seed; default 1) are held out and every other take is
recorded once, as prompted, in the train split; live plays each held-out take once. Each take fills
--take-seconds (default 4): shorter takes loop, longer ones are cut.

Needs `pulseaudio pulseaudio-utils libasound2-plugins` and PortAudio; without them it stops with one sentence.
--json prints the summary (also written to OUT/summary.json).
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge.assets import default_bundle
from edge.bench.jsonl_tail import JsonlTail
from edge.bench.take_check import check_takes
from edge.errors import EdgeError
from edge.modalities import SUBSETS
from edge.moving_digits.own_actions import OWN_ACTIONS, TAKE_S

REPO = Path(__file__).resolve().parents[2]
HEADER = re.compile(r"^\[\d+/\d+\] (.*): take \d+/\d+(?: again)? \((\w+), ")
WINDOW_S = 2.0
RECORD_KEYS = ("seconds", "takes_kept", "takes_lost", "frames_captured", "frames_written", "frames_dropped",
               "samples_captured", "samples_written", "samples_dropped", "mic_dropped_blocks", "silence_filled",
               "stalls", "sensor_losses")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (recordings/, ft/, live.jsonl, summary.json)")
    p.add_argument("--from", dest="bundle", type=Path, default=None,
                   help="bundle to fine-tune (default the shipped karmma_s); its training levels render the stage")
    p.add_argument("--takes", type=Path, default=None,
                   help="a folder of real takes to play instead of rendered ones (split files: media, verb, noun)")
    p.add_argument("--train", type=int, default=None, help="training takes per action (default 10; not with --takes)")
    p.add_argument("--val", type=int, default=None, help="validation takes per action (default 2; not with --takes)")
    p.add_argument("--test", type=int, default=None, help="test takes per action (default 2; with --takes: held-out "
                                                          "takes per action, default 1)")
    p.add_argument("--actions", type=int, default=None, help="how many of the actions (default all)")
    p.add_argument("--take-seconds", type=float, default=None, help="take length (default 2.5 s; 4 s with --takes)")
    p.add_argument("--countdown", type=float, default=0.5, help="countdown before each take (default 0.5 s)")
    p.add_argument("--pause", type=float, default=0.5, help="pause after each take (default 0.5 s)")
    p.add_argument("--record-only", action="store_true", help="stop after recording and checking the takes")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                   help="passed to trainer finetune (e.g. --set finetune.head_epochs=5 finetune.epochs=30)")
    p.add_argument("--live-gap", type=float, default=3.0, help="idle seconds before each live action (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def write_plan(path: Path, takes: list[tuple[str, str, dict[str, int]]], take_s: float, countdown: float,
               pause: float) -> None:
    """The recorder's plan: per (verb, noun, {split: takes}), the action's takes spread over the splits in
    proportion."""
    lines = [f"take_seconds: {take_s}", f"countdown: {countdown}", f"pause: {pause}", "actions:"]
    for verb, noun, splits in takes:
        weights = ", ".join(f"{s}: {n}" for s, n in splits.items() if n > 0)
        lines.append(f"  - {{verb: {verb}, noun: {noun}, takes: {sum(splits.values())}, splits: {{{weights}}}}}")
    path.write_text("\n".join(lines) + "\n")


def _check_args(args: argparse.Namespace) -> None:
    """Checks the arguments and fills in the defaults of the mode (rendered or --takes)."""
    if args.takes is not None:
        if args.train is not None or args.val is not None:
            raise EdgeError("with --takes every take not held out is a training take: --train and --val apply to "
                            "rendered takes only.")
        args.train, args.val = 0, 0
        args.test = 1 if args.test is None else args.test
        args.take_seconds = 4.0 if args.take_seconds is None else args.take_seconds
        shortest = WINDOW_S
        if args.test < 1:
            raise EdgeError(f"--test must be at least 1 with --takes (the live step plays held-out takes), got "
                            f"{args.test}.")
        if args.actions is not None and args.actions < 1:   # the upper bound: once the folder is read (_stage)
            raise EdgeError(f"--actions must be at least 1, got {args.actions}.")
    else:
        args.train = 10 if args.train is None else args.train
        args.val = 2 if args.val is None else args.val
        args.test = 2 if args.test is None else args.test
        args.take_seconds = 2.5 if args.take_seconds is None else args.take_seconds
        shortest = TAKE_S
        if args.train < 1 or args.val < 0 or args.test < 0:
            raise EdgeError(f"--train must be at least 1 and --val / --test at least 0, got {args.train}, "
                            f"{args.val}, {args.test}.")
        if args.actions is not None and not 1 <= args.actions <= len(OWN_ACTIONS):
            raise EdgeError(f"--actions must be from 1 to {len(OWN_ACTIONS)}, got {args.actions}.")
    if not args.take_seconds > shortest or args.countdown < 0 or args.pause < 0:
        raise EdgeError(f"--take-seconds must exceed {shortest:g} s and --countdown / --pause be >= 0, "
                        f"got {args.take_seconds}, {args.countdown}, {args.pause}.")
    if args.live_gap < 0:
        raise EdgeError(f"--live-gap must be >= 0, got {args.live_gap}.")
    if args.out.exists() and not args.out.is_dir():
        raise EdgeError(f"--out {args.out} is a file, not a folder.")


class Devices:
    """A stage (rendered or real takes) on an MJPEG camera and a PulseAudio microphone, all started and stopped
    together."""

    def __init__(self, work: Path, stage) -> None:
        from edge.bench.mjpeg import MJPEGServer
        from edge.bench.pulse import PcmFeed, PulseServer

        self.pulse = PulseServer(work / "pulse")
        self.stage = stage
        self.pulse.start()
        self.feed = self.camera = None
        try:
            self.feed = PcmFeed(self.pulse, self.stage.rate)
            self.camera = MJPEGServer(self.stage).start()
            self.stage.start_audio(self.feed)
            self.pulse.wait_for_audio()   # a fresh sink's first block is late: the recorder then starts on time
        except BaseException:
            self.close()
            raise
        self.url, self.env = self.camera.url, self.pulse.env

    def close(self) -> None:
        self.stage.stop()
        if self.camera is not None:
            self.camera.stop()
        if self.feed is not None:
            self.feed.close()
        self.pulse.close()


# ---- 1. record ----------------------------------------------------------------------------------------------------
def record(args: argparse.Namespace, dev: Devices, out: Path) -> tuple[dict, list]:
    """Run the recorder on the devices, playing each prompted take; returns its summary and the takes played."""
    prompts = {f"{v} {n}": a for a, (v, n) in enumerate(dev.stage.actions)}
    cmd = [sys.executable, "-m", "edge.record", "--camera", dev.url, "--mic", "default", "--rate", str(dev.stage.rate),
           "--fps", str(dev.stage.fps), "--plan", str(out / "plan.yaml"), "--out", str(out / "recordings"), "--yes",
           "--stats-json", str(out / "record_stats.json")]
    played, split = [], "train"
    with open(out / "record.log", "w") as log, open(out / "record.err", "w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=dev.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1)
        for line in proc.stdout:
            header = HEADER.match(line)
            if header:
                split = header.group(2)
                if header.group(1) in prompts:     # the countdown starts: the stage gets the take ready
                    dev.stage.prepare(split, prompts[header.group(1)])
            elif line.startswith("now: "):
                prompt = line[5:].strip()
                if prompt not in prompts:
                    raise EdgeError(f"the recorder prompted {prompt!r}, which is not one of the stage's actions.")
                played.append(dev.stage.play(split, prompts[prompt]))
            log.write(line)
        proc.wait()
        err.seek(0)
        if proc.returncode != 0:
            raise EdgeError(f"the recorder failed (exit {proc.returncode}): {err.read().strip()[-400:]}")
    if not played:   # a complete plan in OUT (a run started again): its recordings are used as they are
        return {}, played
    return json.loads((out / "record_stats.json").read_text()), played


# ---- 2. finetune --------------------------------------------------------------------------------------------------
def finetune(args: argparse.Namespace, bundle: Path, out: Path) -> dict:
    """`python -m trainer finetune` on the recordings (a subprocess: edge never imports trainer)."""
    cmd = [sys.executable, "-m", "trainer", "finetune", "--dataset", "recordings", "--data-root", str(out),
           "--from", str(bundle), "--out", str(out / "ft")]        # the dataset reads DATA_ROOT/recordings
    for s in args.set:
        cmd += ["--set", s]
    t = time.monotonic()
    with open(out / "finetune.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = round(time.monotonic() - t, 1)
    if rc != 0:
        tail = (out / "finetune.log").read_text().strip().splitlines()[-1:] or [""]
        return {"ran": False, "why": f"trainer finetune failed (exit {rc}): {tail[0][-300:]} (log: "
                                     f"{out / 'finetune.log'})", "failed": True}
    results = out / "ft" / "finetune" / "results.json"
    results = json.loads(results.read_text()) if results.is_file() else None
    return {"ran": True, "wall_s": wall, "command": " ".join(cmd[1:]), "bundle": str(out / "ft" / "bundle"),
            "held_out_action": held_out_accuracy(results), "results": results}


# ---- 3. live ------------------------------------------------------------------------------------------------------
def live(args: argparse.Namespace, dev: Devices, bundle: Path, out: Path) -> dict:
    """run_live.py on the devices while the stage plays a held-out take of each action; majority per action."""
    jsonl = out / "live.jsonl"
    jsonl.unlink(missing_ok=True)
    err = open(out / "live.err", "w+")
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--camera", dev.url, "--mic", "default",
                             "--bundle", str(bundle), "--jsonl", str(jsonl)], cwd=REPO, env=dev.env,
                            stdout=subprocess.DEVNULL, stderr=err, text=True)
    tail = JsonlTail(jsonl)
    tail.start()
    stage = dev.stage
    plays = [a for a in range(len(stage.actions)) for _ in range(stage.live_plays(a))]
    order = [plays[i] for i in np.random.default_rng([args.seed, 0x11FE]).permutation(len(plays))]
    played = []
    try:
        deadline = time.monotonic() + 60
        while not any(set(r["modalities"]) == {"V", "F", "A"} for _, r in tail.predictions()):
            if proc.poll() is not None or time.monotonic() > deadline:
                err.seek(0)
                raise EdgeError("run_live.py never predicted with V, F and A from the devices: "
                                f"{err.read().strip()[-300:] if proc.poll() is not None else 'timed out'}")
            time.sleep(0.1)
        for a in order:
            stage.prepare("test", a)          # a real take is decoded during the gap, not as it should start
            time.sleep(args.live_gap)
            played.append(stage.play("test", a))
            time.sleep(max(0.0, played[-1].end - time.monotonic()))
        time.sleep(WINDOW_S / 2 + 0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        tail.done.set()
        tail.join(timeout=5)
        err.close()
    rows = []
    for take in played:
        votes = collections.Counter((r["verb"], r["noun"]) for s, r in tail.predictions(take.start + WINDOW_S / 2)
                                    if s <= take.end + WINDOW_S / 2 and r["verb"] is not None)
        predicted = list(votes.most_common(1)[0][0]) if votes else None
        truth = list(stage.actions[take.action])
        rows.append({"truth": truth, "predicted": predicted, "right": predicted == truth, "take": stage.describe(take),
                     "votes": sum(votes.values()),
                     "outside_actions": sum(count for action, count in votes.items() if action not in stage.actions)})
    return {"right": sum(r["right"] for r in rows), "of": len(rows), "actions": rows}


# ---- the command --------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from edge.bench.pulse import missing_tool

    _check_args(args)
    bundle = args.bundle or default_bundle("fp32")    # fine-tuned: the one with torch weights
    stage = _stage(args, bundle)                      # the arguments first, then the machine
    tool = missing_tool()
    if tool is not None:
        raise EdgeError(f"{tool} is not installed, so there is no virtual microphone to record from "
                        "(apt-get install pulseaudio pulseaudio-utils libasound2-plugins).")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.takes is not None:
        per_action = [(v, n, {"train": len(stage.takes["train"][a])}) for a, (v, n) in enumerate(stage.actions)]
        takes = {"train": sum(len(x) for x in stage.takes["train"].values()),
                 "test": sum(len(x) for x in stage.takes["test"].values())}
    else:
        takes = {"train": args.train, "val": args.val, "test": args.test}
        per_action = [(v, n, takes) for v, n in stage.actions]
    write_plan(out / "plan.yaml", per_action, args.take_seconds, args.countdown, args.pause)
    summary: dict = {"actions": [" ".join(a) for a in stage.actions],
                     "takes" if args.takes is not None else "takes_per_action": takes}
    t_start = time.monotonic()
    dev = Devices(out, stage)
    try:
        t = time.monotonic()
        stats, played = record(args, dev, out)
        summary["record"] = {k: stats[k] for k in RECORD_KEYS} if stats else {"resumed": "the plan was complete"}
        summary["record"]["wall_s"] = round(time.monotonic() - t, 1)
        summary["rows"] = {s: _rows(out / "recordings" / f"{s}.csv") for s in ("train", "val", "test")}
        summary["check"] = check_takes(Path(stats["media"]), played, stage) if stats.get("media") else None
        summary["finetune"] = {"ran": False, "why": "--record-only"} if args.record_only else \
            finetune(args, bundle, out)
        if summary["finetune"]["ran"]:
            t = time.monotonic()
            summary["live"] = live(args, dev, Path(summary["finetune"]["bundle"]), out)
            summary["live"]["wall_s"] = round(time.monotonic() - t, 1)
    finally:
        dev.close()
    summary["wall_s"] = round(time.monotonic() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print(summary)
    if summary["finetune"].get("failed"):
        print(f"edge.bench own-actions: {summary['finetune']['why']}", file=sys.stderr)
        return 1
    return 0


def _stage(args: argparse.Namespace, bundle: Path):
    """The rendered stage (the bundle's training levels) or, with --takes, the real takes' stage."""
    if args.takes is None:
        from edge.bench.stage import Stage
        from edge.bundle import load_bundle
        from edge.moving_digits.config import session_levels

        levels, _ = session_levels(load_bundle(bundle))
        stage = Stage(levels, seed=args.seed)
        stage.actions = OWN_ACTIONS[:args.actions or len(OWN_ACTIONS)]
        return stage
    from edge.bench.takes_stage import TakesStage, actions_of, hold_out, read_takes

    rows = read_takes(args.takes)
    actions = actions_of(rows)
    if args.actions is not None and args.actions > len(actions):
        raise EdgeError(f"--actions must be from 1 to {len(actions)} (the actions in {args.takes}), got "
                        f"{args.actions}.")
    actions = actions[:args.actions or None]
    train, test = hold_out([r for r in rows if r.action in actions], args.test, args.seed)
    return TakesStage({"train": train, "test": test}, actions, args.take_seconds, seed=args.seed)


def held_out_accuracy(results: dict | None) -> dict | None:
    """Action accuracy % per modality subset over the held-out splits of finetune's results.json, pooled by the
    takes each split scored; "n": the held-out takes."""
    splits = [v for k, v in ((results or {}).get("splits") or {}).items() if k != "train" and v]
    if not splits:
        return None
    out: dict = {}
    for subset in SUBSETS:
        rows = [v[subset] for v in splits if subset in v and v[subset]["takes"]]
        if rows:
            n = sum(r["takes"] for r in rows)
            out[subset] = round(sum(r["action"] * r["takes"] for r in rows) / n, 1)
    out["n"] = sum(max(r["takes"] for r in v.values()) for v in splits)
    return out


def _rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


def _print(s: dict) -> None:
    r, c = s["record"], s["check"] or {}
    if "resumed" in r:
        print(f"recordings: {r['resumed']}, used as they are; rows {s['rows']}")
    else:
        print(f"recorded {r['takes_kept']} takes ({r['takes_lost']} lost and asked again) in {r['wall_s']} s: "
              f"{r['frames_written']} frames, {r['samples_written']} samples written; {r['frames_dropped']} frames, "
              f"{r['samples_dropped']} samples dropped; rows {s['rows']}")
    if c:
        print(f"takes check: {c['label_is_played_action']}/{c['takes']} rows name the action played, "
              f"{c['frames_show_played_take']}/{c['takes']} show the played take (camera delay p50/max "
              f"{c['camera_delay_ms_p50_max']} ms), {c['audio_has_played_sound']}/{c['takes_with_sound']} of "
              "those with sound carry it "
              f"(microphone delay p50/max {c['mic_delay_ms_p50_max']} ms)")
    f = s["finetune"]
    if not f["ran"]:
        print(f"finetune: not run ({f['why']}).")
    else:
        print(f"finetune: {f['wall_s']} s, bundle {f['bundle']}")
        held = f["held_out_action"]
        if held:
            print(f"held-out action accuracy ({held['n']} takes, val + test): "
                  + ", ".join(f"{k} {v}" for k, v in held.items() if k != "n"))
    if "live" in s:
        print(f"live: {s['live']['right']}/{s['live']['of']} actions right "
              + ", ".join(f"{' '.join(a['truth'])} -> {' '.join(a['predicted'] or ['none'])}" for a in s["live"]["actions"]))
    print(f"wall time {s['wall_s']} s")
