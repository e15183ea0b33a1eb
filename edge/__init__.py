"""On-device runtime: preprocessing, model bundles, live capture and inference.

`edge` never imports `trainer` or `calibration` (see ARCHITECTURE.md) and does not
need torch unless the torch optical-flow backend is chosen.
"""
