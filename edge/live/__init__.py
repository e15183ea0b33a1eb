"""The live recognizer: a recognizer core without threads, capture drivers around it, sinks after it.

Modules, one job each: core (push frames / audio, tick(now) -> prediction and events; owns rings, health, the
availability mask, shedding, the streaming student and events), pipeline (capture threads, file pacing and
run_session, the one way to run), sinks (JSONL, status line, overlay), console (warnings), sources (the source
interface) with devices, media, arrays and faults, sensors (--camera / --mic to a source), rings, health,
streaming, shedding, events, metrics, config (runtime.yaml), cli (the command line), demo (scored demo stream),
web (the --serve live web view).
"""
