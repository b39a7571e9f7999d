"""Torch modules exported to ONNX, and ONNX graphs embedded in skl2onnx's.

:func:`export_module` runs torch's exporter (``torch.export`` based, the
``dynamo=True`` path) on a module with a dynamic batch dimension and turns
its failures into a ``ValueError`` that names the operation.
:func:`embed_graph` copies an exported graph into a skl2onnx container, with
every name made unique, so that a converter's output is the module's.
"""

import contextlib
import io
import re
import warnings
from copy import deepcopy

import numpy as np
import torch
from onnx import helper, numpy_helper

__all__ = [
    "EXPORT_OPSET",
    "add_constant",
    "embed_graph",
    "export_module",
    "export_opset",
    "float_input",
    "output_as_input_type",
]

# The opset the torch exporter writes (its lowest supported is 18). skl2onnx
# pipelines target their own opset; the higher of the two is used.
EXPORT_OPSET = 18


def export_opset(container, what):
    """The opset to export at: the pipeline's, which must be at least 18."""
    target = container.target_opset_onnx
    if target < EXPORT_OPSET:
        raise ValueError(
            f"The {what} exports to ONNX opset {EXPORT_OPSET} or later "
            f"(torch's exporter); target_opset={target} was asked for. Pass "
            f"target_opset={EXPORT_OPSET} or later (or None)."
        )
    return target


def export_module(module, example, *, what, opset=EXPORT_OPSET):
    """``module`` exported to an ONNX ``ModelProto``, batch dimension dynamic.

    Parameters
    ----------
    module : torch.nn.Module
        In evaluation mode, on the CPU; it is not modified (a copy is exported).
    example : torch.Tensor
        An input batch of at least two rows.
    what : str
        Names the module in error messages (e.g. "AutoencoderTransformer's
        encoder").
    opset : int, default=EXPORT_OPSET

    Returns
    -------
    onnx.ModelProto
        One input, one output.
    """
    # A copy on the CPU: a model fitted on a GPU keeps its weights there.
    module = deepcopy(module).to("cpu").eval()
    batch = torch.export.Dim("batch", min=1)
    dims = {0: batch}
    try:
        # The exporter prints its progress and warns about the opset; the
        # estimator's user asked for none of that.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset,
                dynamic_shapes=(dims,), verbose=False, optimize=True)
    except Exception as exc:
        raise ValueError(
            f"torch's ONNX exporter cannot export the {what}: "
            f"{_operation(exc)}. Rewrite that operation with standard torch "
            "operations (or use a built-in architecture) to export it; "
            "transform in Python still works."
        ) from exc
    model = program.model_proto
    _check_same_outputs(module, model, example, what)
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise ValueError(
            f"The {what} exported to an ONNX graph with "
            f"{len(model.graph.input)} inputs and {len(model.graph.output)} "
            "outputs; it must map one tensor to one tensor."
        )
    if len(model.functions):
        raise ValueError(
            f"The {what} exported to an ONNX graph with local functions "
            f"({', '.join(f.name for f in model.functions)}), which cannot be "
            "embedded in a scikit-learn pipeline's graph."
        )
    return model


def _check_same_outputs(module, model, example, what):
    """Run the exported graph in ONNX Runtime on a random batch of the
    example's shape: a module whose Python code is not traced faithfully
    (a numpy call is baked in as a constant) must not export silently."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    if example.dtype == torch.uint8:
        probe = torch.randint(0, 256, (3, *example.shape[1:]), dtype=torch.uint8,
                              generator=generator)
    else:
        probe = torch.rand((3, *example.shape[1:]), generator=generator)
    with torch.no_grad():
        expected = module(probe).float().numpy()
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: probe.numpy()})[0]
    scale = max(float(np.abs(expected).max()), 1e-6)
    # Loose: a resize rounded to uint8 values may round a tie the other way;
    # a graph holding a traced constant is wrong by far more.
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-2,
                                                      atol=1e-2 * scale):
        raise ValueError(
            f"The {what} exported to an ONNX graph whose output differs from "
            "the module's on a random batch: its forward runs Python code that "
            "torch's exporter does not record (a numpy call, or control flow "
            "on values), which the graph holds as constants. Write that part "
            "with torch operations to export it."
        )


def _operation(exc):
    """The operation torch's exporter failed on, as read from its error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}")
    match = re.search(r"(aten::[\w.]+|aten\.[\w.]+|torch\.ops\.[\w.]+|"
                      r"prims\.[\w.]+)", text)
    if match:
        return f"it has no ONNX conversion of the operation {match.group(1)}"
    return text.strip().splitlines()[0][:300]


def embed_graph(model, scope, container, input_name, output_name, *, prefix):
    """Copy ``model``'s graph into a skl2onnx ``container``.

    Every name of the graph gets a unique name in ``scope``; the graph's
    input reads ``input_name`` and its output is written to ``output_name``
    (through an ``Identity``, so a graph whose output is an input or a
    constant works too).
    """
    graph = model.graph
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    names = {graph.input[0].name: input_name, "": ""}

    def renamed(name):
        if name not in names:
            names[name] = scope.get_unique_variable_name(f"{prefix}_{name}")
        return names[name]

    for tensor in graph.initializer:
        copy = deepcopy(tensor)
        copy.name = renamed(tensor.name)
        container.initializers.append(copy)
    for node in graph.node:
        if any(attribute.g.node or attribute.graphs
               for attribute in node.attribute):
            raise ValueError(
                f"The exported graph holds a {node.op_type} node with a "
                "subgraph, which cannot be embedded; export a module "
                "without data-dependent control flow."
            )
        attributes = {attribute.name: helper.get_attribute_value(attribute)
                      for attribute in node.attribute}
        container.add_node(
            node.op_type, _given_inputs(node, renamed, scope, container),
            [renamed(name) for name in node.output],
            op_domain=node.domain, op_version=opsets.get(node.domain),
            name=scope.get_unique_operator_name(f"{prefix}_{node.op_type}"),
            **attributes)
    container.add_node("Identity", [renamed(graph.output[0].name)], [output_name],
                       name=scope.get_unique_operator_name(f"{prefix}_out"))


def _given_inputs(node, renamed, scope, container):
    """The node's inputs renamed; omitted optional inputs ("") dropped at the
    end and, in the middle, given as empty tensors (skl2onnx's topological
    sort knows no "" name). Resize's ``roi`` and ``scales`` are the only such
    inputs torch's exporter writes, and an empty one means "not given"."""
    inputs = list(node.input)
    while inputs and inputs[-1] == "":
        inputs.pop()
    if "" in inputs and node.op_type != "Resize":
        raise ValueError(
            f"The exported graph's {node.op_type} node omits an optional "
            "input, which cannot be embedded in a scikit-learn pipeline's graph."
        )
    names = []
    for name in inputs:
        if name == "":
            name = scope.get_unique_variable_name("empty")
            container.initializers.append(
                numpy_helper.from_array(np.zeros(0, np.float32), name))
            names.append(name)
        else:
            names.append(renamed(name))
    return names


def float_input(operator, container, scope):
    """The operator's input as float32: cast when it is float64 (or integer)."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import FloatTensorType

    variable = operator.inputs[0]
    if isinstance(variable.type, FloatTensorType):
        return variable.full_name
    name = scope.get_unique_variable_name(f"{variable.full_name}_float")
    container.add_node("Cast", [variable.full_name], [name],
                       to=TensorProto.FLOAT,
                       name=scope.get_unique_operator_name("CastToFloat"))
    return name


def output_as_input_type(operator, container, scope, float_name):
    """Write the float32 ``float_name`` to the operator's output, cast back to
    float64 when the input is float64 (transform returns X's float dtype)."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType

    output = operator.outputs[0].full_name
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        container.add_node("Cast", [float_name], [output], to=TensorProto.DOUBLE,
                           name=scope.get_unique_operator_name("CastToDouble"))
    else:
        container.add_node("Identity", [float_name], [output],
                           name=scope.get_unique_operator_name("Output"))


def as_numpy_float32(tensor):
    """A torch tensor or array as a C-contiguous float32 numpy array."""
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().numpy()
    return np.ascontiguousarray(tensor, dtype=np.float32)


def add_constant(scope, container, name, value):
    """A float32 initializer holding ``value``; returns its unique name."""
    value = as_numpy_float32(value)
    unique = scope.get_unique_variable_name(name)
    container.initializers.append(numpy_helper.from_array(value, unique))
    return unique
