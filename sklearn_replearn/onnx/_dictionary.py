"""ONNX converter of DictionaryLearner: its sparse coder as transform runs it.

``"threshold"`` is one product and a shrinkage (``Shrink``), as in
``transform``. The lasso (``"lasso_fista"`` and its aliases) is FISTA with
adaptive restarts as two nested ONNX ``Loop`` s: every ``check_every``
iterations each row's duality gap is checked and a row whose gap is at most
``transform_tol`` times its objective stops changing; the loop ends when all
rows have stopped or after ``transform_max_iter`` iterations. That is the
stopping rule of ``transform``'s coder, so each row's objective is within a
factor ``1 + transform_tol`` of the optimum, as there. (``transform`` reaches
the same certificate by working sets when there are more than 64 atoms: the
codes then agree to the solver's tolerance, not to rounding.) ``"omp"`` is
refused.
"""

import math

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from sklearn.utils.validation import check_is_fitted

from ._graph import add_constant, float_input, output_as_input_type

__all__ = ["CHECK_EVERY", "convert_dictionary", "dictionary_shape"]

# Iterations between duality-gap checks (lasso_fista's default).
CHECK_EVERY = 10
_LASSO = ("lasso_fista", "lasso_lars", "lasso_cd")


def _settings(estimator):
    """The coder's settings as transform uses them, or a clear error."""
    check_is_fitted(estimator)
    estimator._check_params_after_fit()
    algorithm = estimator.transform_algorithm
    if algorithm not in (*_LASSO, "threshold"):
        raise ValueError(
            f"transform_algorithm={algorithm!r} cannot be exported to ONNX "
            "(orthogonal matching pursuit selects atoms one by one with a "
            "growing least-squares solve); set transform_algorithm="
            "'lasso_fista' or 'threshold' (set_params) before exporting."
        )
    alpha = (estimator.alpha if estimator.transform_alpha is None
             else estimator.transform_alpha)
    return algorithm, float(alpha)


def dictionary_shape(operator):
    """skl2onnx shape calculator: (N, n_features_in_) -> (N, n_components)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    estimator = operator.raw_operator
    _settings(estimator)
    shape = operator.inputs[0].type.shape
    n_features = estimator.n_features_in_
    if len(shape) != 2 or shape[1] not in (None, n_features):
        raise ValueError(
            f"DictionaryLearner takes rows of {n_features} features; the ONNX "
            f"input has shape {shape}. Pass X_sample of shape (n_samples, "
            f"{n_features})."
        )
    kind = (DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType)
            else FloatTensorType)
    operator.outputs[0].type = kind([shape[0], estimator.components_.shape[0]])


def convert_dictionary(scope, operator, container):
    """skl2onnx converter: the codes of ``transform``."""
    estimator = operator.raw_operator
    algorithm, alpha = _settings(estimator)
    if container.target_opset_onnx < 18:
        raise ValueError(
            f"DictionaryLearner's ONNX coder needs opset 18 or later; "
            f"target_opset={container.target_opset_onnx} was asked for."
        )
    D = np.asarray(estimator.components_, dtype=np.float32)
    x = float_input(operator, container, scope)
    d_t = add_constant(scope, container, "dictionary_t", np.ascontiguousarray(D.T))
    correlations = scope.get_unique_variable_name("correlations")
    container.add_node("MatMul", [x, d_t], [correlations],
                       name=scope.get_unique_operator_name("Correlations"))
    codes = scope.get_unique_variable_name("codes")
    if algorithm == "threshold":
        _shrink(container, scope, correlations, codes, alpha,
                estimator.positive_code)
    else:
        _Fista(scope, container, D, alpha, estimator).build(x, correlations, codes)
    output_as_input_type(operator, container, scope, codes)


def _shrink(container, scope, values, output, threshold, positive):
    """``soft_threshold(values, threshold, positive=positive)`` as ONNX nodes."""
    name = scope.get_unique_operator_name("SoftThreshold")
    if positive:
        shifted = scope.get_unique_variable_name("shifted")
        amount = add_constant(scope, container, "threshold",
                              np.array(threshold, np.float32))
        container.add_node("Sub", [values, amount], [shifted], name=name + "_sub")
        container.add_node("Relu", [shifted], [output], name=name)
    else:
        container.add_node("Shrink", [values], [output], name=name,
                           bias=float(threshold), lambd=float(threshold))


def momentum_factors(n_steps):
    """FISTA's extrapolation factors by age since the last restart (float32),
    computed as ``sparse._coders._momentum_factors`` computes them."""
    factors = np.zeros(n_steps + 2, dtype=np.float32)
    momentum = np.float32(1.0)
    for j in range(1, n_steps + 2):
        new = np.float32(0.5) * (np.float32(1.0) + np.sqrt(
            np.float32(1.0) + np.float32(4.0) * momentum * momentum))
        factors[j] = (momentum - np.float32(1.0)) / new
        momentum = new
    return factors


class _Fista:
    """Builds the nested ``Loop`` s of the lasso coder (see the module's doc)."""

    def __init__(self, scope, container, D, alpha, estimator):
        self.scope, self.container = scope, container
        self.alpha = alpha
        self.positive = bool(estimator.positive_code)
        self.tol = float(estimator.transform_tol)
        self.max_iter = int(estimator.transform_max_iter)
        gram = D @ D.T
        # lipschitz_constant: the Gram matrix's largest eigenvalue in float64.
        lipschitz = max(float(np.linalg.eigvalsh(gram.astype(np.float64))[-1]),
                        1e-12)
        self.step = 1.0 / lipschitz
        eye = np.eye(D.shape[0], dtype=np.float32)
        self.constants = {
            "propagator": eye - np.float32(self.step) * gram,
            "dictionary": D,
            "dictionary_t": np.ascontiguousarray(D.T),
            "factors": momentum_factors(self.max_iter),
        }

    def name(self, base):
        return self.scope.get_unique_variable_name(base)

    def const(self, base, value, dtype=np.float32):
        """A constant node's output (inside a subgraph or the main graph)."""
        name = self.name(base)
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name, helper.make_node("Constant", [], [name], value=tensor,
                                      name=self.name(f"{base}_node"))

    def build(self, x, correlations, output):
        """Add the loops: rows of ``x`` -> their lasso codes in ``output``."""
        scope, container = self.scope, self.container
        names = {key: add_constant(scope, container, key, value)
                 for key, value in self.constants.items()}
        self.names = {**names, "x": x}
        scaled = scope.get_unique_variable_name("scaled_correlations")
        step = add_constant(scope, container, "step", np.array(self.step, np.float32))
        container.add_node("Mul", [correlations, step], [scaled],
                           name=scope.get_unique_operator_name("ScaledCorrelations"))
        self.names["c"] = scaled
        zeros = scope.get_unique_variable_name("zero_codes")
        container.add_node("Mul", [correlations, add_constant(
            scope, container, "zero", np.array(0.0, np.float32))], [zeros],
            name=scope.get_unique_operator_name("ZeroCodes"))
        # Per-row (N, 1) states: age since restart (int64) and still iterating.
        first_column = scope.get_unique_variable_name("first_column")
        container.add_node("Slice", [zeros, *(add_int(scope, container, v) for v in
                                              ((0,), (1,), (1,)))],
                           [first_column], name=scope.get_unique_operator_name("Col"))
        age0 = scope.get_unique_variable_name("age0")
        container.add_node("Cast", [first_column], [age0], to=TensorProto.INT64,
                           name=scope.get_unique_operator_name("Age0"))
        active0 = scope.get_unique_variable_name("active0")
        container.add_node("Equal", [first_column, first_column], [active0],
                           name=scope.get_unique_operator_name("Active0"))
        n_checks = math.ceil(self.max_iter / CHECK_EVERY)
        trips = add_int(scope, container, n_checks, shape=())
        cond = scope.get_unique_variable_name("loop_cond")
        container.initializers.append(numpy_helper.from_array(np.array(True), cond))
        outs = [output, *(scope.get_unique_variable_name(n) for n in
                          ("y_final", "age_final", "active_final", "change_final"))]
        container.add_node("Loop", [trips, cond, zeros, zeros, age0, active0, zeros],
                           outs, body=self.outer_body(),
                           name=scope.get_unique_operator_name("FistaChecks"))

    def outer_body(self):
        """One check period: up to CHECK_EVERY steps, then the gap check."""
        i, cond_in = self.name("check"), self.name("cond_in")
        z, y, age, active, change = (self.name(v) for v in
                                     ("z", "y", "age", "active", "change"))
        nodes = []
        # Steps this period: min(CHECK_EVERY, max_iter - i * CHECK_EVERY).
        every, node = self.const("every", CHECK_EVERY, np.int64)
        nodes.append(node)
        budget, node = self.const("budget", self.max_iter, np.int64)
        nodes.append(node)
        done, left, n_steps = self.name("done"), self.name("left"), self.name("steps")
        nodes += [helper.make_node("Mul", [i, every], [done]),
                  helper.make_node("Sub", [budget, done], [left]),
                  helper.make_node("Min", [left, every], [n_steps])]
        true, node = self.const("true", True, np.bool_)
        nodes.append(node)
        z2, y2, age2, change2 = (self.name(v) for v in ("z2", "y2", "age2", "change2"))
        nodes.append(helper.make_node(
            "Loop", [n_steps, true, z, y, age, change], [z2, y2, age2, change2],
            body=self.inner_body(active)))
        solved, nodes_gap = self.solved(z2, change2)
        nodes += nodes_gap
        still, active2, any_active = (self.name(v) for v in
                                      ("unsolved", "active2", "any_active"))
        active_f, any_f = self.name("active_f"), self.name("any_f")
        # The loop goes on while any row is still iterating.
        nodes += [helper.make_node("Not", [solved], [still]),
                  helper.make_node("And", [active, still], [active2]),
                  helper.make_node("Cast", [active2], [active_f], to=F),
                  helper.make_node("ReduceMax", [active_f], [any_f], keepdims=0),
                  helper.make_node("Cast", [any_f], [any_active], to=B)]
        inputs = _values([(i, N, []), (cond_in, B, []), (z, F, None), (y, F, None),
                          (age, N, None), (active, B, None), (change, F, None)])
        outputs = _values([(any_active, B, []), (z2, F, None), (y2, F, None),
                           (age2, N, None), (active2, B, None), (change2, F, None)])
        return helper.make_graph(nodes, self.name("fista_check"), inputs, outputs)

    def inner_body(self, active):
        """One FISTA step of every row still iterating (the others kept)."""
        n = self.names
        i, cond_in = self.name("step"), self.name("cond_in")
        z, y, age, change = (self.name(v) for v in ("z", "y", "age", "change"))
        v, z_new, delta = self.name("v"), self.name("z_new"), self.name("delta")
        nodes = [helper.make_node("MatMul", [y, n["propagator"]], [self.name("yp")])]
        nodes.append(helper.make_node("Add", [nodes[-1].output[0], n["c"]], [v]))
        threshold = self.alpha * self.step
        if self.positive:
            t, node = self.const("threshold", threshold)
            nodes += [node, helper.make_node("Sub", [v, t], [self.name("vt")])]
            nodes.append(helper.make_node("Relu", [nodes[-1].output[0]], [z_new]))
        else:
            nodes.append(helper.make_node("Shrink", [v], [z_new], bias=threshold,
                                          lambd=threshold))
        nodes.append(helper.make_node("Sub", [z_new, z], [delta]))
        # Gradient-based restart: momentum dropped where the step goes back.
        back, dot, restart = self.name("back"), self.name("dot"), self.name("restart")
        axis1, node = self.const("axis1", [1], np.int64)
        zero, node0 = self.const("zero", 0.0)
        one, node1 = self.const("one", 1, np.int64)
        zero_i, node2 = self.const("zero_i", 0, np.int64)
        nodes += [node, node0, node1, node2,
                  helper.make_node("Sub", [y, z_new], [back]),
                  helper.make_node("Mul", [back, delta], [self.name("prod")])]
        nodes += [helper.make_node("ReduceSum", [nodes[-1].output[0], axis1], [dot],
                                   keepdims=1),
                  helper.make_node("Greater", [dot, zero], [restart]),
                  helper.make_node("Add", [age, one], [self.name("older")])]
        age_new, factor = self.name("age_new"), self.name("factor")
        nodes += [helper.make_node("Where", [restart, zero_i, nodes[-1].output[0]],
                                   [age_new]),
                  helper.make_node("Gather", [n["factors"], age_new], [factor]),
                  helper.make_node("Mul", [factor, delta], [self.name("push")])]
        y_new = self.name("y_new")
        nodes.append(helper.make_node("Add", [z_new, nodes[-1].output[0]], [y_new]))
        outputs = []
        for new, old, base in ((z_new, z, "z_out"), (y_new, y, "y_out"),
                               (age_new, age, "age_out"), (delta, change, "ch_out")):
            kept = self.name(base)
            nodes.append(helper.make_node("Where", [active, new, old], [kept]))
            outputs.append(kept)
        cond_out = self.name("cond_out")
        nodes.append(helper.make_node("Identity", [cond_in], [cond_out]))
        inputs = _values([(i, N, []), (cond_in, B, []), (z, F, None), (y, F, None),
                          (age, N, None), (change, F, None)])
        outs = _values([(cond_out, B, []), *zip(outputs, (F, F, N, F),
                                                 (None,) * 4)])
        return helper.make_graph(nodes, self.name("fista_step"), inputs, outs)

    def solved(self, z, change):
        """Nodes computing each row's "solved" flag (N, 1): ``lasso_duality_gap``
        and the stopping test of ``fista_rows``."""
        n = self.names
        nodes = []

        def op(kind, inputs, **attributes):
            out = self.name(kind.lower())
            nodes.append(helper.make_node(kind, inputs, [out], **attributes))
            return out

        def const(base, value, dtype=np.float32):
            name, node = self.const(base, value, dtype)
            nodes.append(node)
            return name

        axis1 = const("axis1", [1], np.int64)
        residual = op("Sub", [n["x"], op("MatMul", [z, n["dictionary"]])])
        residual_sq = op("ReduceSum", [op("Mul", [residual, residual]), axis1],
                         keepdims=1)
        half = const("half", 0.5)
        alpha = const("alpha", self.alpha)
        l1 = op("ReduceSum", [op("Abs", [z]), axis1], keepdims=1)
        primal = op("Add", [op("Mul", [half, residual_sq]), op("Mul", [alpha, l1])])
        correlation = op("MatMul", [residual, n["dictionary_t"]])
        if not self.positive:
            correlation = op("Abs", [correlation])
        worst = op("ReduceMax", [correlation, axis1], keepdims=1)
        tiny = const("tiny", np.finfo(np.float32).tiny)
        one = const("one", 1.0)
        zero = const("zero", 0.0)
        if self.alpha > 0:
            scale = op("Min", [op("Div", [alpha, op("Max", [worst, tiny])]), one])
        else:
            scale = op("Where", [op("LessOrEqual", [worst, zero]), one, zero])
        x_dot_r = op("ReduceSum", [op("Mul", [n["x"], residual]), axis1], keepdims=1)
        dual = op("Sub", [op("Mul", [scale, x_dot_r]),
                          op("Mul", [op("Mul", [half, op("Mul", [scale, scale])]),
                                     residual_sq])])
        gap = op("Max", [op("Sub", [primal, dual]), zero])
        tol = const("tol", self.tol)
        solved = op("LessOrEqual", [gap, op("Mul", [tol, primal])])
        if self.alpha == 0:
            # Least squares: a small change relative to the row's largest code.
            largest = op("Max", [op("ReduceMax", [op("Abs", [z]), axis1], keepdims=1),
                                 tiny])
            moved = op("ReduceMax", [op("Abs", [change]), axis1], keepdims=1)
            solved = op("Or", [solved, op("LessOrEqual",
                                          [moved, op("Mul", [tol, largest])])])
        return solved, nodes


# Element types of the loop bodies' values.
F, N, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _values(specs):
    """Value infos of a loop body's inputs or outputs: (name, type, shape)."""
    return [helper.make_tensor_value_info(name, kind, shape)
            for name, kind, shape in specs]


def add_int(scope, container, value, shape=None):
    """An int64 initializer (``value`` as a 1-D array, or a scalar)."""
    array = np.array(value, dtype=np.int64)
    if shape == ():
        array = array.reshape(())
    name = scope.get_unique_variable_name("int")
    container.initializers.append(numpy_helper.from_array(array, name))
    return name
