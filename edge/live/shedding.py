"""Load shedding against a per-prediction latency budget: lower the flow resolution, then drop flow."""
from __future__ import annotations

from edge.live.config import SheddingConfig


class LoadShedder:
    """Level 0..len(flow_scales)-1 picks a flow resolution; the level after the last drops flow (F missing).

    Only when flow is already dropped do predictions start to run late (the loop then skips ticks rather than
    queueing them).
    """

    def __init__(self, cfg: SheddingConfig) -> None:
        self.cfg = cfg
        self.level = 0
        self._over = 0
        self._under = 0
        self.escalations = 0

    @property
    def flow_scale(self) -> float | None:
        scales = self.cfg.flow_scales
        return float(scales[self.level]) if self.level < len(scales) else None

    def update(self, elapsed_ms: float) -> None:
        """Record one prediction's processing time and move one level when the trend is clear."""
        if elapsed_ms > self.cfg.budget_ms:
            self._over, self._under = self._over + 1, 0
        elif elapsed_ms < 0.5 * self.cfg.budget_ms:
            self._over, self._under = 0, self._under + 1
        else:
            self._over = self._under = 0
        if self._over >= self.cfg.shed_after and self.level < len(self.cfg.flow_scales):
            self.level += 1
            self.escalations += 1
            self._over = 0
        elif self._under >= self.cfg.recover_after and self.level > 0:
            self.level -= 1
            self._under = 0
