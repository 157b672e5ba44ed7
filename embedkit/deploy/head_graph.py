"""Fitted heads as ONNX graphs: features in, class probabilities and the label index out.

Every graph has one input ``features`` (N, *shape) float32 and two outputs,
``probabilities`` (N, K) float32 in the order of ``head.classes_`` and ``label`` (N,)
int64, the column of the most probable class. The scikit-learn heads are written node by
node with ``onnx.helper`` (no converter to install): the linear heads (logreg, ridge, sgd,
svm) are a Gemm and a Softmax (SGD's one-vs-rest log loss: Sigmoid, then normalised), the
centroid head a MatMul on L2-normalised features and the kNN head a MatMul and a TopK
over the training features. The torch heads go through ``torch.onnx`` (opset 17,
``dynamo=False``), as backbones do.

    embedkit deploy head/ --out model.onnx     # backbone + this graph, composed
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.heads.registry import RECORDS, record_of

OPSET = 17
FEATURES, PROBABILITIES, LABEL = "features", "probabilities", "label"
_EPS = 1e-12  # the centroid head's floor on feature norms


def head_to_onnx(head, feature_shape: tuple[int, ...], *, opset: int = OPSET):
    """Convert a fitted head into an ONNX model (input ``features``, see module docstring).

    Parameters
    ----------
    head : a fitted embedkit head
        One whose registry record names a ``graph`` (every registered head but kNN with
        another metric than cosine);
        a semi-supervised head (spread, selftrain) converts the head it fitted last.
    feature_shape : tuple of int
        Per-item shape of ``features``: ``(D,)``, or the tap's ``(C, H, W)`` for attnpool.
    opset : int
        ONNX opset of the graph (13 or later); match the backbone it is composed with.

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> import numpy as np, onnxruntime as ort
    >>> from sklearn.datasets import make_classification
    >>> from embedkit.heads import make_head
    >>> X, y = make_classification(100, 8, n_classes=3, n_informative=4, random_state=0)
    >>> head = make_head("logreg").fit(X, y)
    >>> model = head_to_onnx(head, (8,))
    >>> session = ort.InferenceSession(model.SerializeToString())
    >>> proba, label = session.run(None, {"features": X[:5].astype("float32")})
    >>> bool(np.abs(proba - head.predict_proba(X[:5])).max() < 1e-5)
    True
    >>> label.tolist() == head.predict(X[:5]).tolist()  # classes_ are 0, 1, 2
    True
    """
    name, record = type(head).__name__, record_of(head)
    if record is not None and record.graph == "final" and hasattr(head, "head_"):
        head = head.head_  # a semi-supervised head predicts with the head it fitted last
        name, record = type(head).__name__, record_of(head)
    if record is None or record.graph in (None, "final"):
        convertible = ", ".join(r.name for r in RECORDS if r.graph)
        raise UserInputError(f"cannot convert a {name} to ONNX; heads that convert: {convertible}")
    if not hasattr(head, "classes_"):
        raise UserInputError(f"{name} is not fitted; train it before converting it")
    if opset < 13:
        raise UserInputError(f"opset {opset} is too old for the head graph; use 13 or later")
    if record.graph == "torch":
        return _torch_model(head, tuple(feature_shape), opset)
    nodes, weights = _GRAPHS[record.graph](head)
    return _model(nodes, weights, (int(np.prod(feature_shape)),), len(head.classes_), opset)


def _linear(head):
    """Gemm with the class weights, then Softmax (or SGD's normalised one-vs-rest sigmoid)."""
    est = head.estimator_
    W = np.atleast_2d(np.asarray(est.coef_, np.float64))  # (K, D), or (1, D) for two classes
    b = np.broadcast_to(np.asarray(est.intercept_, np.float64), (len(W),))
    ovr = type(est).__name__ == "SGDClassifier" and not hasattr(head, "temperature_")
    if len(W) == 1:  # binary: the scores (-d/2, d/2), whose softmax is (1 - sigmoid(d), sigmoid(d))
        W, b, ovr = np.vstack([-W / 2, W / 2]), np.array([-b[0] / 2, b[0] / 2]), False
    if hasattr(head, "temperature_"):  # calibrated: softmax(scores / T), T folded in
        W, b = W / head.temperature_, b / head.temperature_
    nodes = [_node("Gemm", [FEATURES, "W", "b"], ["scores"], transB=1)]  # (N, K)
    if ovr:  # SGDClassifier(log_loss) with K > 2: sigmoid per class, normalised to sum 1
        nodes += [
            _node("Sigmoid", ["scores"], ["sig"]),
            _node("ReduceSum", ["sig", "axis1"], ["total"], keepdims=1),
            _node("Div", ["sig", "total"], [PROBABILITIES]),
        ]
        return nodes, {"W": W, "b": b, "axis1": np.array([1], np.int64)}
    nodes.append(_node("Softmax", ["scores"], [PROBABILITIES], axis=1))
    return nodes, {"W": W, "b": b}


def _centroid(head):
    """Cosine: MatMul of the L2-normalised features with the prototypes; euclidean: Gemm."""
    C = np.asarray(head.centroids_, np.float64) / head.temperature_  # (K, D)
    if head.metric == "cosine":
        nodes = _l2_normalise(FEATURES, "unit")
        nodes.append(_node("MatMul", ["unit", "Ct"], ["scores"]))
        weights = {"Ct": C.T, "eps": np.array(_EPS), "axis1": np.array([1], np.int64)}
    else:  # -|x - c|^2 / T; the -|x|^2 term is the same for every class and cancels
        c = np.asarray(head.centroids_, np.float64)
        nodes = [_node("Gemm", [FEATURES, "W", "b"], ["scores"], transB=1)]
        weights = {"W": 2 * C, "b": -(c**2).sum(1) / head.temperature_}
    nodes.append(_node("Softmax", ["scores"], [PROBABILITIES], axis=1))
    return nodes, weights


def _knn(head):
    """Cosine kNN: similarities by MatMul, the k nearest by TopK, their votes summed."""
    est = head.estimator_
    if head.metric != "cosine" or head.weights not in ("distance", "uniform"):
        raise UserInputError(
            f"cannot convert a KNNHead with metric={head.metric!r}, weights={head.weights!r}; "
            "the ONNX kNN takes metric='cosine' with weights 'distance' or 'uniform'"
        )
    # scikit-learn keeps the training rows and their class indices in _fit_X and _y.
    train = np.asarray(est._fit_X, np.float64)  # (M, D)
    train /= np.maximum(np.linalg.norm(train, axis=1, keepdims=True), _EPS)
    votes = np.eye(len(head.classes_))[np.asarray(est._y)]  # (M, K) one-hot
    nodes = _l2_normalise(FEATURES, "unit") + [
        _node("MatMul", ["unit", "Tt"], ["sim"]),  # (N, M) cosine similarity
        _node("TopK", ["sim", "k"], ["near_sim", "near"], axis=1, largest=1),  # (N, k)
        _node("Gather", ["votes", "near"], ["near_votes"]),  # (N, k, K)
    ]
    if head.weights == "distance":  # weight 1 / cosine distance, floored for exact matches
        nodes += [
            _node("Sub", ["one", "near_sim"], ["dist"]),
            _node("Max", ["dist", "tiny"], ["dist_pos"]),
            _node("Div", ["one", "dist_pos"], ["w"]),
            _node("Unsqueeze", ["w", "axis2"], ["w3"]),  # (N, k, 1)
            _node("Mul", ["near_votes", "w3"], ["weighted"]),
        ]
    else:
        nodes.append(_node("Identity", ["near_votes"], ["weighted"]))
    nodes += [
        _node("ReduceSum", ["weighted", "axis1"], ["tally"], keepdims=0),  # (N, K)
        _node("ReduceSum", ["tally", "axis1"], ["total"], keepdims=1),
        _node("Div", ["tally", "total"], [PROBABILITIES]),
    ]
    weights = {
        "Tt": train.T,
        "votes": votes,
        "k": np.array([est.n_neighbors], np.int64),
        "eps": np.array(_EPS),
        "axis1": np.array([1], np.int64),
    }
    if head.weights == "distance":
        weights |= {"one": np.array(1.0), "tiny": np.array(_EPS), "axis2": np.array([2], np.int64)}
    return nodes, weights


_GRAPHS = {"linear": _linear, "centroid": _centroid, "knn": _knn}  # HeadRecord.graph -> nodes


def _l2_normalise(x: str, out: str) -> list:
    """``out = x / max(|x|, eps)`` row-wise, as the heads normalise (needs eps and axis1)."""
    return [
        _node("Mul", [x, x], ["square"]),
        _node("ReduceSum", ["square", "axis1"], ["square_sum"], keepdims=1),
        _node("Sqrt", ["square_sum"], ["norm"]),
        _node("Max", ["norm", "eps"], ["norm_pos"]),
        _node("Div", [x, "norm_pos"], [out]),
    ]


def _node(op: str, inputs: list[str], outputs: list[str], **attrs):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, **attrs)


def _model(nodes, weights: dict, shape: tuple[int, ...], n_classes: int, opset: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # The heads compute in float64, and so does the graph (every float weight is float64):
    # features are cast up on the way in and probabilities down on the way out.
    wide = {FEATURES: "x64", PROBABILITIES: "p64"}
    for n in nodes:
        n.input[:] = [wide.get(i, i) for i in n.input]
        n.output[:] = [wide.get(o, o) for o in n.output]
    nodes = [
        _node("Cast", [FEATURES], ["x64"], to=TensorProto.DOUBLE),
        *nodes,
        _node("Cast", ["p64"], [PROBABILITIES], to=TensorProto.FLOAT),
        # The label is the argmax of the float32 probabilities, as head.predict takes it
        # (ties, e.g. saturated one-vs-rest sigmoids, go to the first class).
        _node("ArgMax", [PROBABILITIES], [LABEL], axis=1, keepdims=0),
    ]

    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["N", *shape])],
        [
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]),
        ],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _torch_model(head, feature_shape: tuple[int, ...], opset: int):
    import onnx
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, module, shape):
            super().__init__()
            self.module, self.shape = module, shape

        def forward(self, x):  # (N, *feature_shape)
            p = self.module(x.reshape(-1, *self.shape)).softmax(1)  # (N, K)
            return p, p.argmax(1)

    shape = tuple(head.feature_shape_)
    if head.spatial_input and len(shape) == 1:
        shape = (*shape, 1, 1)  # pooled features are a 1 x 1 map, as in fit
    wrapper = Probabilities(head.module_.cpu().eval(), shape).eval()
    example = torch.zeros((2, *feature_shape), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "head.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[FEATURES],
                output_names=[PROBABILITIES, LABEL],
                dynamic_axes={FEATURES: {0: "N"}, PROBABILITIES: {0: "N"}, LABEL: {0: "N"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        return onnx.load(str(path))
