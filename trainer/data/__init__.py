"""Training datasets built with `edge.preprocess`, so training sees exactly what the runtime feeds."""
from trainer.data.moving_digits import MovingDigitsDataset, materialize

__all__ = ["MovingDigitsDataset", "materialize"]
