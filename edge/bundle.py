"""The model bundle: a folder with `bundle.yaml` and ONNX files (the trainer -> edge contract).

Manifest keys (format_version 1):
  format_version, name, kind ("student" | "teacher"), precision ("fp32" | "int8"),
  modalities ["V", "F", "A"], tokens {V, F, A}, token_dim {V, F, A},
  preprocess (PreprocessConfig.to_dict()), labels {verb: [...], noun: [...]},
  temperatures {subset key like "VFA", "VF", "A": float}, metrics {...}, extra {...},
  actions (optional) [[verb name, noun name], ...]: the only actions the bundle may say (a fine-tuned bundle's
  training pairs); absent: every verb-noun pair is an action (MovingDigits-AV),
  files {role: {path, sha256}} with roles video_encoder, flow_encoder, audio_encoder, fusion, and optionally
  weights: the trainer's torch state dict (`weights.pt`, what `python -m trainer finetune --from` starts from);
  the runtime checks its hash when it is listed and never reads it.

ONNX signatures (batch dimension first and dynamic):
  video_encoder: frame  [B, C, S, S] (C: preprocess video_input) -> token [B, token_dim.V]
  flow_encoder:  flow   [B, 2, S, S]             -> token [B, token_dim.F]
  audio_encoder: logmel [B, 1, n_mels, frames]   -> token [B, token_dim.A]
  fusion: video_tokens [B, T_V, D_V], flow_tokens [B, T_F, D_F], audio_tokens [B, T_A, D_A],
          mask [B, 3] (1 = modality present, order V, F, A) -> verb_logits [B, n_verb], noun_logits [B, n_noun]
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from edge.errors import BundleError, ConfigError
from edge.modalities import MODALITIES, SUBSETS
from edge.preprocess.config import PreprocessConfig

FORMAT_VERSION = 1
MANIFEST = "bundle.yaml"
ROLES = ("video_encoder", "flow_encoder", "audio_encoder", "fusion")
ENCODER_INPUT = {"V": ("video_encoder", "frame"), "F": ("flow_encoder", "flow"), "A": ("audio_encoder", "logmel")}
FUSION_INPUT = {"V": "video_tokens", "F": "flow_tokens", "A": "audio_tokens"}     # + "mask" [B, 3] (V, F, A)
WEIGHTS = "weights"                                   # the optional role: torch state dict, never loaded here
FILE_NAMES = {**{role: f"{role}.onnx" for role in ROLES}, WEIGHTS: "weights.pt"}
REQUIRED_KEYS = ("format_version", "name", "kind", "precision", "modalities", "tokens", "token_dim",
                 "preprocess", "labels", "files")
OPTIONAL_KEYS = ("temperatures", "metrics", "extra", "actions")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_io(manifest: Mapping[str, Any], pre: PreprocessConfig) -> dict[str, tuple[dict, dict]]:
    """Per role: ({input name: shape}, {output name: shape}); None marks the dynamic batch."""
    tok, dim = manifest["tokens"], manifest["token_dim"]
    s = pre.frame_size
    n_verb, n_noun = len(manifest["labels"]["verb"]), len(manifest["labels"]["noun"])
    encoder_input = {"V": (pre.video_channels, s, s), "F": (2, s, s), "A": (1, pre.n_mels, pre.logmel_frames)}
    io = {role: ({name: (None, *encoder_input[m])}, {"token": (None, dim[m])})
          for m, (role, name) in ENCODER_INPUT.items()}
    io["fusion"] = ({**{name: (None, tok[m], dim[m]) for m, name in FUSION_INPUT.items()}, "mask": (None, 3)},
                    {"verb_logits": (None, n_verb), "noun_logits": (None, n_noun)})
    return io


def write_bundle(out_dir: str | Path, manifest: Mapping[str, Any], onnx_files: Mapping[str, str | Path]) -> Path:
    """Write a bundle atomically: copy the ONNX files, hash them, write the manifest.

    `manifest` holds every key but `files` and `format_version`; `onnx_files` maps role -> ONNX path (plus
    optionally WEIGHTS -> the torch state dict). The folder appears complete or not at all (written to a
    temporary sibling, then renamed).
    """
    out_dir = Path(out_dir)
    missing = [r for r in ROLES if r not in onnx_files]
    if missing:
        raise BundleError(f"cannot write bundle {out_dir}: no ONNX file given for {missing}.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        files = {}
        for role in (*ROLES, WEIGHTS):
            if role not in onnx_files:
                continue
            name = FILE_NAMES[role]
            shutil.copyfile(onnx_files[role], tmp / name)
            files[role] = {"path": name, "sha256": sha256_of(tmp / name)}
        full = {"format_version": FORMAT_VERSION, **dict(manifest), "files": files}
        full.setdefault("temperatures", {})
        full.setdefault("metrics", {})
        _validate_manifest(full, tmp / MANIFEST)
        with open(tmp / MANIFEST, "w") as fh:
            yaml.safe_dump(full, fh, sort_keys=False)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _validate_manifest(m: Any, where: Path) -> PreprocessConfig:
    if not isinstance(m, Mapping):
        raise BundleError(f"{where} is not a YAML mapping.")
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise BundleError(f"{where} is missing required key(s) {missing}.")
    unknown = sorted(set(m) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise BundleError(f"{where} has unknown key(s) {unknown}.")
    version = m["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise BundleError(
            f"{where} has bundle format version {version!r}; this runtime reads version {FORMAT_VERSION}: "
            "update the runtime or re-export the bundle."
        )
    if m["precision"] not in ("fp32", "int8"):
        raise BundleError(f"{where}: precision must be 'fp32' or 'int8', got {m['precision']!r}.")
    for key in ("tokens", "token_dim"):
        value = m[key]
        if not isinstance(value, Mapping) or any(
            not isinstance(value.get(mod), int) or value.get(mod) <= 0 for mod in MODALITIES
        ):
            raise BundleError(f"{where}: {key} must give a positive integer for each of V, F, A, got {value!r}.")
    labels = m["labels"]
    if not isinstance(labels, Mapping) or any(
        not isinstance(labels.get(h), list) or not labels.get(h) for h in ("verb", "noun")
    ):
        raise BundleError(f"{where}: labels must hold non-empty 'verb' and 'noun' lists.")
    temps = m.get("temperatures") or {}
    if not isinstance(temps, Mapping) or any(
            k not in SUBSETS or isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.01 <= v <= 100
            for k, v in temps.items()):
        raise BundleError(f"{where}: temperatures must map subset keys ({', '.join(SUBSETS)}) to numbers from 0.01 "
                          f"to 100, got {dict(temps) if isinstance(temps, Mapping) else temps!r}.")
    actions = m.get("actions")
    if actions is not None and (not isinstance(actions, list) or not actions or any(
            not isinstance(a, list) or len(a) != 2 or a[0] not in labels["verb"] or a[1] not in labels["noun"]
            for a in actions)):
        raise BundleError(f"{where}: actions must be a non-empty list of [verb, noun] pairs named in labels.")
    try:
        pre = PreprocessConfig.from_dict(m["preprocess"])
    except ConfigError as exc:
        raise BundleError(f"{where}: {exc}") from None
    if pre.video_tokens != m["tokens"]["V"] or pre.flow_tokens != m["tokens"]["F"] or pre.audio_tokens != m["tokens"]["A"]:
        raise BundleError(f"{where}: tokens {dict(m['tokens'])} disagree with the preprocess token counts.")
    return pre


@dataclass
class Bundle:
    """A validated bundle: manifest, preprocessing config and one ONNX Runtime session per role."""

    path: Path
    manifest: dict
    preprocess: PreprocessConfig
    sessions: dict = field(repr=False)

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.manifest["labels"]

    @functools.cached_property
    def actions(self) -> np.ndarray | None:
        """[n, 2] (verb, noun) index pairs of the only actions this bundle may say, worked out once (the live loop
        decodes with them every prediction); None: every pair."""
        listed = self.manifest.get("actions")
        if listed is None:
            return None
        return np.array([(self.labels["verb"].index(v), self.labels["noun"].index(n)) for v, n in listed], int)

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def temperature(self, subset: str) -> float:
        """Temperature for a modality subset key ("VFA", "VA", ...); 1.0 when not calibrated."""
        return float(self.manifest.get("temperatures", {}).get(subset, 1.0))

    def file(self, role: str) -> Path | None:
        """The (hash-checked) file of `role` in this bundle, None when the manifest lists none."""
        entry = self.manifest["files"].get(role)
        return self.path / entry["path"] if entry else None

    def run(self, role: str, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.sessions[role].run(None, inputs)


def _inside(bundle: Path, rel: Any, manifest_path: Path, role: str) -> Path:
    """The bundle file `rel` names, refused unless it is a relative path that stays inside the bundle folder."""
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise BundleError(f"{manifest_path}: files.{role}.path {rel!r} must be a path inside the bundle folder "
                          "(relative, without '..').")
    file_path = bundle / rel
    if not file_path.resolve().is_relative_to(bundle.resolve()):
        raise BundleError(f"{manifest_path}: files.{role}.path {rel!r} leads outside the bundle folder "
                          "(through a symbolic link).")
    return file_path


def _refuse_external_data(file_path: Path, data: bytes, role: str) -> None:
    """An ONNX file (`data`: its bytes) whose tensors live in external data files is refused: the manifest hashes
    only the .onnx. Every external tensor names its file under the key "location"; a file without those bytes has
    none, and the onnx package (16 MB resident once imported, a tenth of the runtime's budget) is imported only
    otherwise."""
    if b"location" not in data:
        return
    import onnx

    try:
        model = onnx.load(str(file_path), load_external_data=False)
    except Exception:  # not parseable: onnxruntime's loader names the problem below
        return
    graphs, external = [model.graph], False
    while graphs and not external:
        graph = graphs.pop()
        tensors = list(graph.initializer)
        for node in graph.node:
            for attr in node.attribute:
                tensors += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
                graphs += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)
    if external:
        raise BundleError(f"bundle file {file_path} ({role}) keeps weights in external data files, which the "
                          f"bundle's sha256 check does not cover; re-export it with the weights inside the .onnx file.")


def _onnx_shape(value_info) -> tuple:
    return tuple(d if isinstance(d, int) else None for d in value_info.shape)


def load_bundle(path: str | Path, *, threads: int = 1, providers: list[str] | None = None) -> Bundle:
    """Load and validate a bundle; every problem is one BundleError sentence naming the file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist or is not a folder.")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"model bundle {path} has no {MANIFEST} manifest.")
    try:
        manifest = yaml.safe_load(manifest_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid YAML ({type(exc).__name__}).") from None
    pre = _validate_manifest(manifest, manifest_path)
    files = manifest["files"]
    if not isinstance(files, Mapping):
        raise BundleError(f"{manifest_path}: files must be a mapping of role -> {{path, sha256}}.")
    missing_roles = [r for r in ROLES if r not in files]
    if missing_roles:
        raise BundleError(f"{manifest_path} lists no file for {missing_roles}.")
    # Hash every file before any model is loaded: a tampered or truncated file never reaches onnxruntime.
    for role in (*ROLES, WEIGHTS) if WEIGHTS in files else ROLES:
        entry = files[role]
        if not isinstance(entry, Mapping) or "path" not in entry or "sha256" not in entry:
            raise BundleError(f"{manifest_path}: files.{role} must have 'path' and 'sha256'.")
        file_path = _inside(path, entry["path"], manifest_path, role)
        if not file_path.is_file():
            raise BundleError(f"bundle file {file_path} ({role}) is missing.")
        data = None if role == WEIGHTS else file_path.read_bytes()     # an ONNX file is read once for both checks
        digest = sha256_of(file_path) if data is None else hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise BundleError(f"bundle file {file_path} ({role}) does not match its sha256 in {MANIFEST}; "
                              "it is corrupt or was modified.")
        if data is not None:
            _refuse_external_data(file_path, data, role)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = providers or ["CPUExecutionProvider"]
    sessions = {}
    for role, (inputs, outputs) in expected_io(manifest, pre).items():
        file_path = path / files[role]["path"]
        try:
            session = ort.InferenceSession(str(file_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises several private exception types
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"bundle file {file_path} ({role}) is not a loadable ONNX model: {first_line}") from None
        _check_signature(session, inputs, outputs, file_path, role)
        sessions[role] = session
    return Bundle(path=path, manifest=manifest, preprocess=pre, sessions=sessions)


def _check_signature(session, inputs: dict, outputs: dict, file_path: Path, role: str) -> None:
    for kind, expected, actual in (("input", inputs, session.get_inputs()), ("output", outputs, session.get_outputs())):
        got = {v.name: _onnx_shape(v) for v in actual}
        for name, shape in expected.items():
            if name not in got:
                raise BundleError(f"bundle file {file_path} ({role}) has no {kind} named {name!r} "
                                  f"(it has {sorted(got)}).")
            if len(got[name]) != len(shape) or any(
                e is not None and g is not None and e != g for e, g in zip(shape, got[name])
            ):
                raise BundleError(f"bundle file {file_path} ({role}) {kind} {name!r} has shape {got[name]}, "
                                  f"the manifest implies {shape}.")
