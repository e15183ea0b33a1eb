"""The live recognizer: capture threads -> bounded rings -> streaming student -> health mask -> action events.

Modules, one job each: sources (camera / file / mic / array / fault injection), rings (bounded buffers),
health (usable-or-missing per modality), streaming (encode each input once, fuse per prediction),
shedding (latency budget), events (smoothing + hysteresis), metrics (counters, status line),
config (runtime.yaml), pipeline (threads and the prediction loop), demo (scored demo stream),
web (the --serve live web view).
"""
