"""The one definition of what a model sees: frames, optical flow and log-mel audio.

The trainer imports these functions to build training data, and the live runtime
calls the same ones, so a model is trained on exactly what it is fed.
"""

from edge.preprocess.config import FlowConfig, PreprocessConfig
from edge.preprocess.frames import (CameraFrame, check_frame, normalize_frame, prepare_frame, to_gray, to_rgb_uint8,
                                   uniform_indices, video_input)
from edge.preprocess.audio import log_mel, mixdown, resample, window_to_model_input
from edge.preprocess.flow import FlowBackend, compute_flow, flow_to_model_input, make_flow_backend

# Bump when a change alters what any function here returns for the same input: caches of preprocessed
# training items are keyed by it.
PREPROCESS_VERSION = 1

__all__ = [
    "PREPROCESS_VERSION",
    "CameraFrame", "FlowConfig", "PreprocessConfig", "check_frame", "normalize_frame", "prepare_frame",
    "to_gray", "to_rgb_uint8", "uniform_indices", "video_input", "log_mel", "mixdown", "resample", "window_to_model_input",
    "FlowBackend", "compute_flow", "flow_to_model_input", "make_flow_backend",
]
