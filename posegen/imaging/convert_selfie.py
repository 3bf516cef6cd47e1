"""MediaPipe's selfie segmentation TFLite models as ONNX graphs that onnxruntime can run.

Off-the-shelf converters stop at HARD_SWISH and at MediaPipe's custom op
`Convolution2DTransposeBias`, so this converter reads the flatbuffer with `tflite` and writes the
few operators these models use with `onnx`, one small function per TFLite operator. It refuses
any operator or option it does not translate exactly, rather than produce a graph that runs but
segments differently.

The ONNX graph works in NCHW: input `image` is RGB in [0, 1], shape (1, 3, H, W); output
`probability` is the person probability, shape (1, 1, H, W). TFLite's NHWC constants are
transposed once, at conversion; fp16 weights are widened to float32 (exact).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

from posegen.errors import PermanentError

INPUT_NAME: Final = "image"
OUTPUT_NAME: Final = "probability"
_OPSET: Final = 17
# IR version 8 goes with opset 17; a newer default would shut out older onnxruntime releases.
_IR_VERSION: Final = 8

# NHWC (TFLite) axis → NCHW (ONNX) axis, for activations and 4-D constants.
_NCHW_AXIS: Final = {0: 0, 1: 2, 2: 3, 3: 1}
_NHWC_TO_NCHW: Final = (0, 3, 1, 2)

_NUMPY_TYPES: Final = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
}

# Schema `Padding` (builtin options) and the C API's `TfLitePadding` (custom options) differ.
_SCHEMA_SAME, _SCHEMA_VALID = tflite.Padding.SAME, tflite.Padding.VALID
_C_API_SAME, _C_API_VALID = 1, 2


class UnsupportedModel(PermanentError):
    """The TFLite model uses an operator or option this converter does not translate."""


def convert(tflite_model: bytes, *, source: str = "") -> onnx.ModelProto:
    """The ONNX equivalent of a single-subgraph float TFLite model (MediaPipe selfie segmentation).

    `source` (e.g. where the file came from) is recorded in the model's metadata with the
    source file's sha256, so a converted file says what it was made from.
    """
    graph = _Graph(tflite_model)
    for index in range(graph.subgraph.OperatorsLength()):
        operator = graph.subgraph.Operators(index)
        name = graph.operator_name(operator)
        converter = _CONVERTERS.get(name)
        if converter is None:
            raise UnsupportedModel(f"TFLite operator {name} (operator #{index}) is not supported.")
        converter(graph, operator)
    model = helper.make_model(
        graph.to_onnx(),
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="posegen.imaging.convert_selfie",
        doc_string="MediaPipe selfie segmentation (Apache-2.0), converted from TFLite.",
    )
    model.ir_version = _IR_VERSION
    helper.set_model_props(
        model,
        {
            "source": source,
            "source_sha256": hashlib.sha256(tflite_model).hexdigest(),
            "input": "RGB in [0, 1], NCHW; the image stretched to the input size",
            "output": "person probability, NCHW",
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def input_size(model: onnx.ModelProto) -> tuple[int, int]:
    """(width, height) of a converted model's image input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return (dims[3].dim_value, dims[2].dim_value)


@dataclass
class _Graph:
    """The TFLite model being read and the ONNX graph being written."""

    tflite_model: bytes
    model: tflite.Model = field(init=False)
    subgraph: tflite.SubGraph = field(init=False)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    initializer_names: set[str] = field(default_factory=set)
    # Constant tensors (weights, dequantized weights, sizes, axes), in TFLite layout.
    constants: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.model = tflite.Model.GetRootAs(self.tflite_model, 0)
            subgraphs = self.model.SubgraphsLength()
        except Exception as exc:  # the flatbuffer reader raises anything on garbage
            raise UnsupportedModel(f"Not a TFLite flatbuffer: {exc}") from exc
        if subgraphs != 1:
            raise UnsupportedModel(f"Expected one subgraph, found {subgraphs}.")
        self.subgraph = self.model.Subgraphs(0)
        if self.subgraph.InputsLength() != 1 or self.subgraph.OutputsLength() != 1:
            raise UnsupportedModel("Expected exactly one input and one output tensor.")
        for index in range(self.subgraph.TensorsLength()):
            data = self._buffer_data(index)
            if data is not None:
                self.constants[index] = data

    def operator_name(self, operator: tflite.Operator) -> str:
        code = self.model.OperatorCodes(operator.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == tflite.BuiltinOperator.CUSTOM:
            return code.CustomCode().decode()
        return tflite.opcode2name(builtin)

    def shape(self, tensor: int) -> list[int]:
        return self.subgraph.Tensors(tensor).ShapeAsNumpy().tolist()

    def nchw_shape(self, tensor: int) -> list[int]:
        shape = self.shape(tensor)
        if len(shape) != 4:
            raise UnsupportedModel(f"Tensor #{tensor} has rank {len(shape)}; expected NHWC.")
        return [shape[axis] for axis in _NHWC_TO_NCHW]

    def value_name(self, tensor: int) -> str:
        """The ONNX name of an activation tensor."""
        if tensor == self.subgraph.Inputs(0):
            return INPUT_NAME
        if tensor == self.subgraph.Outputs(0):
            return OUTPUT_NAME
        return f"t{tensor}_{self.subgraph.Tensors(tensor).Name().decode()}"

    def inputs(self, operator: tflite.Operator) -> list[int]:
        return [index for index in operator.InputsAsNumpy().tolist() if index >= 0]

    def output(self, operator: tflite.Operator) -> int:
        if operator.OutputsLength() != 1:
            raise UnsupportedModel("Expected operators with one output.")
        return operator.Outputs(0)

    def constant(self, tensor: int) -> np.ndarray:
        value = self.constants.get(tensor)
        if value is None:
            raise UnsupportedModel(f"Tensor #{tensor} should be a constant but is computed.")
        return value

    def operand(self, tensor: int) -> str:
        """An input that must be computed, not a constant (these models have none there)."""
        if tensor in self.constants:
            raise UnsupportedModel(f"Constant #{tensor} as an operand is not supported.")
        return self.value_name(tensor)

    def initializer(self, name: str, value: np.ndarray) -> str:
        """A constant input; one per name, however many operators read it."""
        if name not in self.initializer_names:
            self.initializer_names.add(name)
            self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def add(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))

    def add_activated(
        self, op_type: str, inputs: list[str], tflite_output: int, activation: int, **attributes
    ) -> None:
        """A node for an operator whose options carry a fused activation; these models fuse none."""
        if activation != tflite.ActivationFunctionType.NONE:
            raise UnsupportedModel(f"Fused activation {activation} is not supported.")
        self.add(op_type, inputs, self.value_name(tflite_output), **attributes)

    def to_onnx(self) -> onnx.GraphProto:
        input_shape = self.nchw_shape(self.subgraph.Inputs(0))
        output_shape = self.nchw_shape(self.subgraph.Outputs(0))
        return helper.make_graph(
            self.nodes,
            "selfie_segmentation",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, output_shape)],
            initializer=self.initializers,
        )

    def _buffer_data(self, tensor: int) -> np.ndarray | None:
        info = self.subgraph.Tensors(tensor)
        buffer = self.model.Buffers(info.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        dtype = _NUMPY_TYPES.get(info.Type())
        if dtype is None:
            raise UnsupportedModel(f"Constant #{tensor} has unsupported TFLite type {info.Type()}.")
        raw = buffer.DataAsNumpy().tobytes()
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape(tensor)).copy()


def _same_pads(
    in_hw: list[int], kernel_hw: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """TensorFlow's SAME padding as ONNX pads [top, left, bottom, right]: odd pixel at the end."""
    begin, end = [], []
    for size, kernel, stride, dilation in zip(in_hw, kernel_hw, strides, dilations, strict=True):
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def _pads(padding: int, in_hw: list[int], kernel_hw, strides, dilations) -> list[int]:
    if padding == _SCHEMA_VALID:
        return [0, 0, 0, 0]
    if padding == _SCHEMA_SAME:
        return _same_pads(in_hw, kernel_hw, strides, dilations)
    raise UnsupportedModel(f"Padding {padding} is not supported.")


def _conv_2d(graph: _Graph, operator: tflite.Operator) -> None:
    # Kernel (out, h, w, in) → ONNX (out, in, h, w).
    options = _options(operator, tflite.Conv2DOptions)
    _convolution(graph, operator, options, kernel_axes=(0, 3, 1, 2), group=1)


def _depthwise_conv_2d(graph: _Graph, operator: tflite.Operator) -> None:
    # Kernel (1, h, w, channels * multiplier) → ONNX (channels * multiplier, 1, h, w), a group
    # per input channel.
    options = _options(operator, tflite.DepthwiseConv2DOptions)
    x, weights, _ = _conv_inputs(graph, operator)
    kernel_channels, channels = graph.shape(weights)[3], graph.shape(x)[3]
    if kernel_channels != channels * options.DepthMultiplier():
        raise UnsupportedModel(f"Depthwise kernel of {kernel_channels} for {channels} channels.")
    _convolution(graph, operator, options, kernel_axes=(3, 0, 1, 2), group=channels)


def _convolution(
    graph: _Graph,
    operator: tflite.Operator,
    options: tflite.Conv2DOptions | tflite.DepthwiseConv2DOptions,
    *,
    kernel_axes: tuple[int, int, int, int],
    group: int,
) -> None:
    x, weights, bias = _conv_inputs(graph, operator)
    kernel = graph.constant(weights)
    kernel_hw = list(kernel.shape[1:3])
    strides = [options.StrideH(), options.StrideW()]
    dilations = [options.DilationHFactor(), options.DilationWFactor()]
    graph.add_activated(
        "Conv",
        [
            graph.value_name(x),
            graph.initializer(f"w{weights}", kernel.transpose(kernel_axes).astype(np.float32)),
            graph.initializer(f"b{bias}", graph.constant(bias).astype(np.float32)),
        ],
        graph.output(operator),
        options.FusedActivationFunction(),
        kernel_shape=kernel_hw,
        strides=strides,
        dilations=dilations,
        pads=_pads(options.Padding(), graph.shape(x)[1:3], kernel_hw, strides, dilations),
        group=group,
    )


def _transpose_conv_bias(graph: _Graph, operator: tflite.Operator) -> None:
    """MediaPipe's `Convolution2DTransposeBias`: a transposed convolution, then a bias.

    Its custom options are the C struct TfLiteTransposeConvParams: int32 padding (C API enum),
    stride_w, stride_h. The output size is the output tensor's; pads follow from it.
    """
    raw = operator.CustomOptionsAsNumpy()
    if isinstance(raw, int) or raw.size != 12:
        raise UnsupportedModel("Convolution2DTransposeBias options are not three int32s.")
    padding, stride_w, stride_h = np.frombuffer(raw.tobytes(), dtype="<i4").tolist()
    x, weights, bias = _conv_inputs(graph, operator)
    kernel = graph.constant(weights)  # (out, h, w, in)
    in_hw = graph.shape(x)[1:3]
    out_hw = graph.shape(graph.output(operator))[1:3]
    strides = [stride_h, stride_w]
    totals = [
        (size - 1) * stride + k - out
        for size, stride, k, out in zip(in_hw, strides, kernel.shape[1:3], out_hw, strict=True)
    ]
    valid = padding == _C_API_VALID and totals == [0, 0]
    same = padding == _C_API_SAME and all(t >= 0 for t in totals)
    if not (valid or same):
        raise UnsupportedModel(
            f"Convolution2DTransposeBias padding {padding} with output {out_hw} from {in_hw}."
        )
    graph.add(
        "ConvTranspose",
        [
            graph.value_name(x),
            graph.initializer(f"w{weights}", kernel.transpose(3, 0, 1, 2).astype(np.float32)),
            graph.initializer(f"b{bias}", graph.constant(bias).astype(np.float32)),
        ],
        graph.value_name(graph.output(operator)),
        kernel_shape=list(kernel.shape[1:3]),
        strides=strides,
        pads=[t // 2 for t in totals] + [t - t // 2 for t in totals],
    )


def _dequantize(graph: _Graph, operator: tflite.Operator) -> None:
    """fp16 weights widened to float32 once, here: they become constants, not graph nodes."""
    (source,) = graph.inputs(operator)
    value = graph.constant(source)
    if value.dtype != np.float16:
        raise UnsupportedModel(f"DEQUANTIZE of {value.dtype} (only fp16 weights) is not supported.")
    graph.constants[graph.output(operator)] = value.astype(np.float32)


def _elementwise(op_type: str, options_class: type) -> Callable[[_Graph, tflite.Operator], None]:
    def convert_operator(graph: _Graph, operator: tflite.Operator) -> None:
        options = _options(operator, options_class)
        graph.add_activated(
            op_type,
            [graph.operand(tensor) for tensor in graph.inputs(operator)],
            graph.output(operator),
            options.FusedActivationFunction(),
        )

    return convert_operator


def _unary(op_type: str) -> Callable[[_Graph, tflite.Operator], None]:
    def convert_operator(graph: _Graph, operator: tflite.Operator) -> None:
        (x,) = graph.inputs(operator)
        graph.add(op_type, [graph.value_name(x)], graph.value_name(graph.output(operator)))

    return convert_operator


def _average_pool_2d(graph: _Graph, operator: tflite.Operator) -> None:
    """Only the global pooling these models use (a window the size of the input)."""
    options = _options(operator, tflite.Pool2DOptions)
    (x,) = graph.inputs(operator)
    window = [options.FilterHeight(), options.FilterWidth()]
    if window != graph.shape(x)[1:3] or graph.shape(graph.output(operator))[1:3] != [1, 1]:
        raise UnsupportedModel(f"AVERAGE_POOL_2D over {window} is not a global pooling.")
    graph.add_activated(
        "GlobalAveragePool",
        [graph.value_name(x)],
        graph.output(operator),
        options.FusedActivationFunction(),
    )


def _mean(graph: _Graph, operator: tflite.Operator) -> None:
    options = _options(operator, tflite.ReducerOptions)
    x, axes = graph.inputs(operator)
    nchw_axes = sorted(_NCHW_AXIS[int(axis) % 4] for axis in graph.constant(axes).ravel())
    graph.add(
        "ReduceMean",
        [graph.value_name(x)],
        graph.value_name(graph.output(operator)),
        axes=nchw_axes,
        keepdims=int(options.KeepDims()),
    )


def _resize_bilinear(graph: _Graph, operator: tflite.Operator) -> None:
    """With half-pixel centres, as these models resize; ONNX's `half_pixel` linear Resize clamps
    at the borders as TensorFlow does."""
    options = _options(operator, tflite.ResizeBilinearOptions)
    if options.AlignCorners() or not options.HalfPixelCenters():
        raise UnsupportedModel("RESIZE_BILINEAR without half-pixel centres is not supported.")
    x, size = graph.inputs(operator)
    height, width = graph.constant(size).tolist()
    batch, channels = graph.nchw_shape(x)[:2]
    output = graph.output(operator)
    sizes = np.array([batch, channels, height, width], dtype=np.int64)
    graph.add(
        "Resize",
        [graph.value_name(x), "", "", graph.initializer(f"size{output}", sizes)],
        graph.value_name(output),
        mode="linear",
        coordinate_transformation_mode="half_pixel",
    )


def _conv_inputs(graph: _Graph, operator: tflite.Operator) -> tuple[int, int, int]:
    inputs = graph.inputs(operator)
    if len(inputs) != 3:
        raise UnsupportedModel("Expected a convolution with input, weights and bias.")
    x, weights, bias = inputs
    return x, weights, bias


def _options(operator: tflite.Operator, options_class: type):
    table = operator.BuiltinOptions()
    if table is None:
        raise UnsupportedModel(f"Operator has no {options_class.__name__}.")
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    return options


_CONVERTERS: Final[dict[str, Callable[[_Graph, tflite.Operator], None]]] = {
    "ADD": _elementwise("Add", tflite.AddOptions),
    "MUL": _elementwise("Mul", tflite.MulOptions),
    "AVERAGE_POOL_2D": _average_pool_2d,
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "DEQUANTIZE": _dequantize,
    "HARD_SWISH": _unary("HardSwish"),
    "LOGISTIC": _unary("Sigmoid"),
    "RELU": _unary("Relu"),
    "MEAN": _mean,
    "RESIZE_BILINEAR": _resize_bilinear,
    "Convolution2DTransposeBias": _transpose_conv_bias,
}
