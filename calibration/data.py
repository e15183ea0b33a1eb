"""The calibration inputs drawn from held-out clips.

Clips are `trainer.data.clip_set.ClipSet`s (built by the trainer's MovingDigits-AV dataset, which uses
`edge.preprocess`, so they are exactly what the runtime feeds); subsets and masks are `edge.modalities`'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.bundle import FUSION_INPUT
from edge.modalities import MODALITIES, SUBSETS, subset_mask


def encoder_feeds(inputs: np.ndarray, input_name: str, n: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """`n` single-input feeds for one encoder, drawn without replacement from all clips' tokens [N, T, ...]."""
    flat = inputs.reshape(-1, *inputs.shape[2:])
    pick = rng.choice(len(flat), size=min(n, len(flat)), replace=False)
    return [{input_name: flat[i:i + 1].astype(np.float32)} for i in np.sort(pick)]


def fusion_feeds(tokens: dict[str, np.ndarray], masks_per_clip: int,
                 rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Fusion feeds with random missing-modality masks (uniform over the 7 non-empty subsets).

    Missing modalities' tokens are zeroed, as the runtime does, so the calibrated ranges cover every
    way a sensor can drop out.
    """
    feeds = []
    for i in range(len(tokens["V"])):
        for k in rng.integers(0, len(SUBSETS), size=masks_per_clip):
            mask = subset_mask(SUBSETS[k], 1)[0]
            feeds.append({**{FUSION_INPUT[m]: tokens[m][i:i + 1] * mask[j] for j, m in enumerate(MODALITIES)},
                          "mask": mask[None].copy()})
    return feeds


def clips_of(dataset, source: dict) -> "ClipSet":
    """Every sample of a trainer dataset (e.g. your recordings) held in memory as a ClipSet, the form the
    calibration reads (a missing modality's inputs are zeros, as the dataset gives them)."""
    from trainer.data.clip_set import ClipSet

    samples = [dataset[i] for i in range(len(dataset))]
    arrays = {m: np.stack([s[m].numpy() for s in samples]) for m in MODALITIES}
    arrays.update({h: np.asarray([int(s[h]) for s in samples]) for h in ("verb", "noun")})
    return ClipSet.from_arrays(arrays, dataset.labels, key=dataset.cache_key(), source=source)


def dataset_splits(args, bundle, cfg) -> tuple["ClipSet", "ClipSet"]:
    """The val and test splits of --dataset (not MovingDigits-AV) as ClipSets, checked against the bundle's labels."""
    from trainer.__main__ import dataset_spec
    from trainer.data.registry import build_dataset, check_bundle_labels

    spec, out = dataset_spec(args), []
    for split in ("val", "test"):
        dataset = build_dataset(spec, split, train=False, data=cfg.data, pre=bundle.preprocess)
        check_bundle_labels(bundle, dataset, args.dataset)
        out.append(clips_of(dataset, {"data": Path(args.data_root).name, "data_source": f"{args.dataset} {split} split",
                                      **spec.options, "samples": len(dataset)}))
    return out[0], out[1]
