"""Load shedding against a per-prediction latency budget: lower the flow resolution, then drop flow."""
from __future__ import annotations

from edge.live.config import SheddingConfig


class LoadShedder:
    """Level 0..len(flow_scales)-1 picks a flow resolution; the level after the last drops flow (F missing).

    One step down after `shed_after` video ticks in a row over the budget. One step back up after
    `recover_after` ticks in a row under half the budget whose cost at the higher resolution (flow time scaled
    by its pixel count, the rest unchanged) would still fit the budget: under a load that persists, full
    resolution is not re-tried only to miss the budget again. From dropped flow there is no flow time to scale,
    so the half-budget rule alone decides. Only when flow is already dropped do predictions start to run late
    (the loop then skips ticks rather than queueing them).
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

    def projected_one_up_ms(self, elapsed_ms: float, flow_ms: float) -> float:
        """This tick's time had flow run one step higher in resolution (cost proportional to pixels)."""
        scales = self.cfg.flow_scales
        if not 0 < self.level < len(scales):
            return elapsed_ms
        return elapsed_ms + flow_ms * ((scales[self.level - 1] / scales[self.level]) ** 2 - 1.0)

    def update(self, elapsed_ms: float, flow_ms: float = 0.0) -> None:
        """Record one video tick's processing time (and the flow's part of it); move one level when the trend
        is clear."""
        budget = self.cfg.budget_ms
        if elapsed_ms > budget:
            self._over, self._under = self._over + 1, 0
        elif elapsed_ms < 0.5 * budget and self.projected_one_up_ms(elapsed_ms, flow_ms) <= budget:
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
