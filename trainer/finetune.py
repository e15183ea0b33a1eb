"""`python -m trainer finetune`: teach a shipped bundle's student your own actions from a few takes each.

The bundle's torch weights (`weights.pt`, edge.bundle.WEIGHTS) give the encoders, the fusion and the heads' hidden
layers; the heads' last layers are new, sized by the dataset's labels. The takes are decoded once and cut into
2 s windows at the live runtime's timing (trainer.data.takes): `windows_per_class` per action and epoch at random
offsets (class-balanced batches however many takes an action has), mirrored half the time (`hflip`). Training
goes through the one loop (`trainer.loop.fit`, a `MultimodalStep` in mode baseline_delta: CE under modality
dropout, so the result still works with a sensor missing) in two phases: the new head layers alone
(`finetune.head_epochs`), then every weight (`finetune.train: all`) or all but the encoders (`fusion`).
A take is scored by the mean over `views` evenly spaced windows of its action probabilities, verb and noun decoded
jointly over the action list (the (verb, noun) pairs of the training takes), which the bundle records, so the
runtime only ever says an action that exists.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.bundle import WEIGHTS, Bundle, load_bundle
from edge.errors import BundleError, ConfigError
from edge.modalities import MODALITIES, SUBSETS, action_log_probs, subset_mask
from trainer.data.recordings import MissingSplit
from trainer.data.takes import Augment, Take, TakeWindows, load_takes
from trainer.export import export_bundle
from trainer.extractors import build_model, video_backbone
from trainer.models import ModelConfig, MultimodalModel
from trainer.loop import Run, fit, sample_batches
from trainer.stages import MODE_NAMES, check_same_run
from trainer.students import MultimodalStep

PHASES = ("heads", "all", "fusion")


def bundle_model(bundle: Bundle) -> MultimodalModel:
    """The bundle's student as a torch model, from its manifest's model_config and its weights file."""
    path = bundle.file(WEIGHTS)
    if path is None:
        raise BundleError(f"bundle {bundle.path} has no torch weights ({WEIGHTS}.pt) to fine-tune from; use a bundle "
                          "exported by this trainer (int8 bundles keep none: fine-tune the fp32 one).")
    labels = bundle.labels
    try:
        model = build_model(ModelConfig(**bundle.manifest["extra"]["model_config"]), len(labels["verb"]),
                            len(labels["noun"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a missing key, a wrong shape or an unreadable pickle: one sentence each way
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"bundle {bundle.path}: {path.name} does not fit its manifest's model ({first}).") from None
    return model


def new_heads(model: MultimodalModel, n_verb: int, n_noun: int) -> None:
    """Replace the last layer of the verb and noun heads by fresh ones of the new sizes."""
    for name, n in (("head_verb", n_verb), ("head_noun", n_noun)):
        head = getattr(model.fusion, name)
        head[-1] = nn.Linear(head[-1].in_features, n)


def head_parameters(model: MultimodalModel) -> list[nn.Parameter]:
    """The parameters of the heads' last layers (what the first phase trains)."""
    return [p for name in ("head_verb", "head_noun") for p in getattr(model.fusion, name)[-1].parameters()]


def _check_labels(takes: list[Take], labels: dict[str, list[str]]) -> None:
    """Every class of the label set must have a training take (a class never seen cannot be learned)."""
    for head, names in labels.items():
        seen = {getattr(t, head) for t in takes}
        unseen = [n for i, n in enumerate(names) if i not in seen]
        if unseen:
            raise ConfigError(f"the training takes have no {head} {', '.join(map(repr, unseen))}; record some, or "
                              "remove the class from labels.json.")


def with_backbone(model: MultimodalModel, spec: str) -> MultimodalModel:
    """`model` with its video encoder replaced by the backbone `spec` (finetune.backbone, e.g.
    "torchvision:mobilenet_v3_small:weights.pth"); its config names the architecture, not the weights file, so an
    exported bundle rebuilds it from its own weights.pt."""
    model.encoders["V"] = video_backbone(spec, model.cfg.token_dim)
    model.cfg = replace(model.cfg, video_encoder=":".join(spec.split(":")[:2]))
    return model


def action_list(takes: list[Take]) -> list[tuple[int, int]]:
    """The (verb, noun) pairs the takes show, sorted: the only actions a fine-tuned bundle may say."""
    return sorted({t.action for t in takes})


def windows(run: Run, takes: list[Take], *, train: bool) -> TakeWindows:
    ft = run.cfg.finetune
    return TakeWindows(takes, run.pre, train=train, seed=run.seed, windows_per_class=ft.windows_per_class,
                       views=ft.views, augment=Augment(ft.hflip, ft.brightness, ft.contrast, ft.speed))


def _phase(run: Run, model: MultimodalModel, train, trainable: list[nn.Parameter], epochs: int, lr: float,
           name: str, phase: int) -> None:
    """One fine-tuning phase through `fit`: only `trainable` learns (its own optimizer, schedule, checkpoint)."""
    ft = run.cfg.finetune
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    run = replace(run, seed=run.seed + phase, freeze_bn=run.freeze_bn or ft.freeze_bn)   # new masks per phase
    step = MultimodalStep(model, "baseline_delta", None, [], run, p_drop=ft.p_drop)
    batches, n_batches = sample_batches(train, run, view_of=lambda epoch: epoch)
    fit(step, batches, n_batches, run, epochs=epochs, lr=lr, weight_decay=ft.weight_decay, pct_start=0.15,
        ckpt_path=run.out / "finetune" / f"{name}.pt", desc=f"finetune {name}")


def check_settings(run: Run) -> None:
    ft = run.cfg.finetune
    if ft.train not in PHASES[1:]:
        raise ConfigError(f"finetune.train must be one of {list(PHASES[1:])}, got {ft.train!r}.")
    if ft.head_epochs < 0 or ft.epochs < 0 or ft.head_epochs + ft.epochs < 1:
        raise ConfigError("finetune.head_epochs and finetune.epochs must be >= 0, and at least one of them >= 1.")
    if not 0 <= ft.p_drop < 1:
        raise ConfigError(f"finetune.p_drop must be in [0, 1), got {ft.p_drop}.")
    if min(ft.batch_size, ft.windows_per_class, ft.views, ft.members) < 1:
        raise ConfigError(f"finetune.batch_size, windows_per_class, views and members must be at least 1, got "
                          f"{ft.batch_size}, {ft.windows_per_class}, {ft.views}, {ft.members}.")
    if ft.backbone and ft.train != "all":
        raise ConfigError("finetune.backbone brings a new video encoder, which only learns with finetune.train=all.")
    if not (0 <= ft.brightness <= 255 and 0 <= ft.contrast < 1 and 0 <= ft.speed < 1):
        raise ConfigError(f"finetune.brightness must be in [0, 255] and contrast, speed in [0, 1), got "
                          f"{ft.brightness}, {ft.contrast}, {ft.speed}.")


def finetune_model(run: Run, model: MultimodalModel, takes: list[Take], labels: dict[str, list[str]]) -> MultimodalModel:
    """A bundle's student (`bundle_model`) with new heads, trained on windows of `takes` (module doc); in eval mode.
    With `finetune.members` > 1, that many copies from the same start (the same new heads) are trained on their own
    draws of windows, augmentations and masks, and their weights averaged (a "model soup", Wortsman et al. 2022):
    one model to export and run, steadier than any one member. The caller has checked the settings
    (`check_settings`)."""
    _check_labels(takes, labels)
    ft = run.cfg.finetune
    if ft.backbone:
        with_backbone(model, ft.backbone)
    torch.manual_seed(run.seed)
    new_heads(model, len(labels["verb"]), len(labels["noun"]))
    members = []
    for k in range(ft.members):
        member = copy.deepcopy(model) if ft.members > 1 else model
        member_run = replace(run, seed=run.seed + 1000 * k, out=run.out / f"member{k}") if ft.members > 1 else run
        train = windows(member_run, takes, train=True)
        member_run = replace(member_run, cfg=replace(run.cfg, batch_size=min(ft.batch_size, len(train))))
        run.log(f"fine-tuning{f' member {k + 1}/{ft.members}' if ft.members > 1 else ''} on {len(takes)} takes "
                f"of {len(train.actions)} actions, {len(train)} windows an epoch ({MODE_NAMES['baseline_delta']} "
                f"loss, modality dropout p = {ft.p_drop})")
        if ft.head_epochs:
            _phase(member_run, member, train, head_parameters(member), ft.head_epochs, ft.head_lr, "heads", 1)
        if ft.epochs:
            trainable = list(member.parameters() if ft.train == "all" else member.fusion.parameters())
            _phase(member_run, member, train, trainable, ft.epochs, ft.lr, ft.train, 2)
        members.append(member)
    if len(members) > 1:
        states = [m.state_dict() for m in members]
        model.load_state_dict({k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
                               for k, v in states[0].items()})
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


@torch.no_grad()
def predict_takes(run: Run, model: MultimodalModel, takes: list[Take],
                  actions: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """{subset: [n_takes, n_actions] action probabilities, the mean over each take's `views` windows} for every
    subset all of whose modalities some take has; a take lacking one of a subset's modalities gets NaN rows there."""
    scoring = windows(run, takes, train=False)
    views = scoring.views
    samples = [scoring[i] for i in range(len(scoring))]
    device = next(model.parameters()).device
    inputs = {m: torch.stack([x[m] for x in samples]).to(device) for m in MODALITIES}
    has = np.array([[x["present"][m] for m in MODALITIES] for x in samples[::views]], bool)
    out = {}
    for subset in SUBSETS:
        need = subset_mask(subset, 1)[0] > 0
        rows = has[:, need].all(axis=1)
        if not rows.any():
            continue
        mask = torch.from_numpy(subset_mask(subset, len(samples))).to(device)
        verb, noun = model(inputs, mask)
        logp = action_log_probs(verb.cpu().numpy(), noun.cpu().numpy(), actions)
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        probs = (probs / probs.sum(axis=1, keepdims=True)).reshape(len(takes), views, -1).mean(axis=1)
        probs[~rows] = np.nan
        out[subset] = probs
    return out


def take_table(probs: dict[str, np.ndarray], takes: list[Take], actions: list[tuple[int, int]]) -> dict:
    """{subset: {verb, noun, action, takes}} in % over the takes that have the subset's modalities."""
    truth = np.array([t.action for t in takes])
    table = {}
    for subset, p in probs.items():
        rows = ~np.isnan(p[:, 0])
        pred = np.array(actions)[p[rows].argmax(axis=1)]
        ok = pred == truth[rows]
        table[subset] = {"verb": 100.0 * float(ok[:, 0].mean()), "noun": 100.0 * float(ok[:, 1].mean()),
                         "action": 100.0 * float(ok.all(axis=1).mean()), "takes": int(rows.sum())}
    return table


def claim_folder(folder: Path, spec: dict) -> None:
    """A work folder holds checkpoints that `fit` resumes: refuse one written for other takes or settings (another
    --set, crossval's other folds or seed), whose model would be taken as trained here."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "training.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != spec:
        raise ConfigError(f"{folder} holds a training on other takes or settings; use a new --out.")
    stamp.write_text(json.dumps(spec, sort_keys=True))


def run_finetune(run: Run, source: Path, eval_splits: list[str] | None, out_bundle: Path,
                 name: str | None = None) -> dict:
    """Fine-tune the bundle at `source` on `run`'s train split, score `eval_splits` (None: val and test, those
    that exist) per modality subset, write the bundle `out_bundle` (named `name`, default the dataset folder's
    name) and `run.out / finetune / results.json`."""
    start = time.time()
    check_settings(run)
    bundle = load_bundle(source)
    model = bundle_model(bundle)
    run = replace(run, pre=bundle.preprocess)
    train = run.dataset(run.train_split, train=True)
    evaluations = {}                  # bad splits fail before training
    for s in ("val", "test") if eval_splits is None else eval_splits:
        try:
            evaluations[s] = run.dataset(s, train=False)
        except MissingSplit as exc:
            if eval_splits is not None:
                raise
            run.log(f"not scored: {exc}")
    eval_splits = list(evaluations)
    labels = train.labels
    origin = {"from": {"name": bundle.manifest["name"], "weights_sha256": bundle.manifest["files"][WEIGHTS]["sha256"]}}
    check_same_run(run, train, origin)
    takes = load_takes(train)
    claim_folder(run.out / "finetune", {"train": [t.id for t in takes], "finetune": asdict(run.cfg.finetune)})
    model = finetune_model(run, model, takes, labels)
    actions = action_list(takes)
    scores = {}
    for s, d in evaluations.items():
        held_out = load_takes(d)
        scores[s] = take_table(predict_takes(run, model, held_out, actions), held_out, actions)
    name = name or Path(run.spec.options.get("annotations") or run.spec.data_root or ".").resolve().name
    result = {"model": name, "dataset": run.spec.name, "from": str(source), **origin, "labels": labels,
              "actions": [[labels["verb"][v], labels["noun"][n]] for v, n in actions],
              "train": {"takes": len(takes)}, "splits": scores, "config": asdict(run.cfg.finetune), "wall_time_s": 0.0}
    last = eval_splits[-1] if eval_splits else None
    metrics = {"dataset": run.spec.name, **({"split": last, "accuracy": scores[last]} if last else {}),
               "splits": scores}
    export_bundle(model.cpu(), run.pre, labels, out_bundle, name=name, metrics=metrics, actions=result["actions"],
                  extra={"data": {"dataset": run.spec.name, "options": run.spec.options}, "finetuned_from": origin["from"]})
    result["wall_time_s"] = round(time.time() - start, 1)
    work = run.out / "finetune"
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(result, indent=1))
    for s in eval_splits:
        run.log(format_take_table(s, scores[s]))
    return result


def format_take_table(split: str, table: dict) -> str:
    lines = [f"{split}: subset  verb  noun  action  (takes)"]
    lines += [f"  {k:<6} {v['verb']:5.1f} {v['noun']:5.1f} {v['action']:6.1f}  ({v['takes']})" for k, v in table.items()]
    absent = [m for m in MODALITIES if not any(m in k for k in table)]
    if absent:
        lines.append(f"  absent: {', '.join(absent)} (no take has it)")
    return "\n".join(lines)
