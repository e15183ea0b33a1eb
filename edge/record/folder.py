"""The output folder: the recordings dataset's CSVs (read by trainer/data/recordings.py as they are), labels.json,
and media/ with one file per session. Every write is atomic (a temp file, fsync, rename), so a crash or a full
disk never leaves half a row."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.record.plan import SPLITS, Plan
from edge.record.writer import DiskFull

FIELDS = ("media", "start", "end", "verb", "noun")


class FolderError(EdgeError):
    """An output folder that cannot be used (one sentence)."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"the disk holding {path.parent} is full") from None
        raise FolderError(f"cannot write {path} ({exc.strerror or exc}).") from None


class OutputFolder:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.media = self.root / "media"
        if self.root.exists() and not self.root.is_dir():
            raise FolderError(f"the output folder {self.root} is a file, not a folder.")
        try:
            self.media.mkdir(parents=True, exist_ok=True)
            probe = self.media / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise FolderError(f"cannot write to the output folder {self.root} ({exc.strerror or exc}).") from None

    def rows(self, split: str) -> list[dict]:
        path = self.root / f"{split}.csv"
        if not path.exists():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FolderError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc}).") from None
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            return []
        if list(reader.fieldnames[:5]) != list(FIELDS):
            raise FolderError(f"{path} does not start with the columns {','.join(FIELDS)}; it is not a recordings "
                              "CSV this recorder can add to.")
        return list(reader)

    def counts(self) -> dict[tuple[str, str], int]:
        """Takes already recorded per (verb, noun), over every split: what a resumed plan skips."""
        out: dict[tuple[str, str], int] = {}
        for split in SPLITS:
            for r in self.rows(split):
                key = (r["verb"], r["noun"])
                out[key] = out.get(key, 0) + 1
        return out

    def append(self, split: str, rows: list[dict]) -> None:
        """Append rows to <split>.csv atomically (the whole file is rewritten through a temp file)."""
        if not rows:
            return
        path = self.root / f"{split}.csv"
        old = path.read_bytes() if path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if not old:
            w.writerow(FIELDS)
        for r in rows:
            w.writerow([r["media"], f"{r['start']:.3f}", f"{r['end']:.3f}", r["verb"], r["noun"]])
        _atomic_write(path, old + buf.getvalue().encode("utf-8"))

    def merge_labels(self, plan: Plan) -> None:
        """labels.json keeps the class order it has and gains the plan's new names at the end."""
        path = self.root / "labels.json"
        labels = {"verb": [], "noun": []}
        if path.exists():
            try:
                labels = json.loads(path.read_text(encoding="utf-8"))
                assert isinstance(labels, dict) and all(isinstance(labels.get(h), list) for h in ("verb", "noun"))
            except (ValueError, AssertionError, OSError):
                raise FolderError(f"{path} is not a labels file ({{\"verb\": [...], \"noun\": [...]}}); fix or "
                                  "remove it.") from None
        else:  # names already used in the CSVs come first, in the order the trainer would give them
            for h in ("verb", "noun"):
                labels[h] = sorted({r[h] for s in SPLITS for r in self.rows(s)})
        changed = not path.exists()
        for a in plan.actions:
            for h, name in (("verb", a.verb), ("noun", a.noun)):
                if name not in labels[h]:
                    labels[h].append(name)
                    changed = True
        if changed:
            _atomic_write(path, (json.dumps({"verb": labels["verb"], "noun": labels["noun"]}, indent=1) + "\n")
                          .encode())

    RESERVE_BYTES = 256 * 1024

    def reserve(self) -> None:
        """Hold some space for the CSV rows: when the media fill the disk, releasing it lets the finished takes'
        rows still be written."""
        path = self.root / ".space-reserve"
        _atomic_write(path, bytes(self.RESERVE_BYTES))

    def release_reserve(self) -> None:
        try:
            (self.root / ".space-reserve").unlink()
        except OSError:
            pass

    def new_session(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.media / f"session-{stamp}.mkv"
        n = 2
        while path.exists():
            path = self.media / f"session-{stamp}-{n}.mkv"
            n += 1
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

