"""int8 static quantization of one ONNX model with ONNX Runtime's tools, in the formats worth comparing.

Weights are quantized per channel (int8, symmetric), activations per tensor (uint8) from MinMax ranges
collected on calibration inputs. A `Variant` names one choice of format (QDQ or QOperator) and of which
nodes are quantized; `quantize_variant` writes it.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)


@dataclass(frozen=True)
class Variant:
    """One quantization recipe: the ONNX Runtime format and which nodes become int8."""

    name: str
    quant_format: QuantFormat
    op_types: tuple[str, ...] | None = None   # None: every op type ONNX Runtime can quantize
    weight_matmuls_only: bool = False         # quantize only MatMuls with a weight (not q@k, attn@v)
    float_input: bool = False                 # nodes reading a graph input stay float: the input is never rounded
    description: str = ""


# Encoders are conv stacks: everything quantizes; the questions are the graph format and whether the input
# itself may be rounded to uint8. A per-tensor uint8 input loses what the model needs in a small part of its
# range: the frame difference beside the frame (frame+diff video input), the quiet bands of a log-mel. Keeping
# the first conv in float (1-2 % of the weights) cost the shipped student 0-0.4 val action points where
# quantizing it cost 2.0 (V) and 12.6 (F+A).
ENCODER_VARIANTS = (
    Variant("qdq", QuantFormat.QDQ, description="QDQ, all quantizable ops"),
    Variant("qoperator", QuantFormat.QOperator, description="QOperator (QLinearConv), all quantizable ops"),
    Variant("qdq_float_input", QuantFormat.QDQ, float_input=True,
            description="QDQ, all quantizable ops but the first conv (float input)"),
    Variant("qoperator_float_input", QuantFormat.QOperator, float_input=True,
            description="QOperator, all quantizable ops but the first conv (float input)"),
)
# The fusion is a transformer: LayerNorm, Softmax, GELU (Erf) and residual Adds can stay in float.
FUSION_VARIANTS = (
    Variant("qdq", QuantFormat.QDQ, description="QDQ, all quantizable ops"),
    Variant("qoperator", QuantFormat.QOperator, description="QOperator, all quantizable ops"),
    Variant("qdq_matmul", QuantFormat.QDQ, ("MatMul", "Gemm"),
            description="QDQ, MatMul/Gemm only (LayerNorm, Softmax, GELU, Add in float)"),
    Variant("qoperator_matmul", QuantFormat.QOperator, ("MatMul", "Gemm"),
            description="QOperator, MatMul/Gemm only (LayerNorm, Softmax, GELU, Add in float)"),
    Variant("qoperator_weights", QuantFormat.QOperator, ("MatMul", "Gemm"), weight_matmuls_only=True,
            description="QOperator, weight MatMuls only (attention q@k and attn@v in float)"),
)


class FeedReader(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one feed dict at a time."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs shape-inference chatter through the root logger; keep only errors."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _weight_matmul_nodes(model: onnx.ModelProto) -> list[str]:
    weights = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights]


def _input_nodes(model: onnx.ModelProto) -> list[str]:
    inputs = {v.name for v in model.graph.input}
    return [n.name for n in model.graph.node if inputs.intersection(n.input)]


def _compact(path: Path) -> None:
    """Drop what the runtime never reads: value_info, doc strings, node names, and long internal tensor names.

    The exporter's and quantizer's names ("/layers.0/qkv/MatMul_output_0_quantized") are a fifth of a
    small int8 model's file; graph inputs and outputs keep their names (they are the bundle's interface).
    """
    model = onnx.load(str(path))
    graph = model.graph
    del graph.value_info[:]
    model.doc_string = ""
    subgraphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if not any(a.type in subgraphs for n in graph.node for a in n.attribute):
        keep = {v.name for v in graph.input} | {v.name for v in graph.output}
        names: dict[str, str] = {}

        def short(name: str) -> str:
            return name if not name or name in keep else names.setdefault(name, f"{len(names):x}")

        for init in graph.initializer:
            init.name = short(init.name)
        for node in graph.node:
            node.name = ""
            node.doc_string = ""
            node.input[:] = [short(x) for x in node.input]
            node.output[:] = [short(x) for x in node.output]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# Activation ranges from the calibration inputs: MinMax takes the extremes; Percentile (99.999 %) ignores the
# rare outliers that stretch a range and waste int8 levels on it.
CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}


def quantize_variant(src: str | Path, dst: str | Path, feeds: Sequence[dict[str, np.ndarray]],
                     variant: Variant, method: str = "minmax") -> Path:
    """Write the int8 model of `src` under `variant` to `dst`, calibrated on `feeds` (batch-1 input dicts) with
    the activation-range `method` (CALIBRATION_METHODS)."""
    if not feeds:
        raise ValueError("quantization needs at least one calibration input.")
    dst = Path(dst)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        graph = onnx.load(str(pre))
        nodes = _weight_matmul_nodes(graph) if variant.weight_matmuls_only else None
        quantize_static(
            str(pre), str(dst), FeedReader(feeds), quant_format=variant.quant_format,
            op_types_to_quantize=list(variant.op_types) if variant.op_types else None,
            nodes_to_quantize=nodes, nodes_to_exclude=_input_nodes(graph) if variant.float_input else None,
            per_channel=True, reduce_range=False,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
        )
    _compact(dst)
    return dst
