"""Turns an fp32 model bundle into the one a headset runs: int8 static quantization calibrated on held-out
clips with missing-modality masks, accuracy retention per modality subset, and temperature scaling.

`python -m calibration quantize --bundle DIR --data-root R` (see calibration/__main__.py).
"""
