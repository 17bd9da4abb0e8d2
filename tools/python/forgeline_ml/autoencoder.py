"""A small dense autoencoder in numpy, and its export to ONNX.

Layout: F -> H1 -> ... -> Hk (tanh) -> B (linear bottleneck) -> Hk -> ... -> H1 (tanh) -> F (linear). The anomaly score of a
row is the mean squared reconstruction error over its standardised features, computed inside the
ONNX graph so that the runtime gets one float per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "features"
OUTPUT_NAME = "score"
OPSET = 17


@dataclass
class Autoencoder:
    """Weights of the autoencoder; ``weights[i]`` is ``[in, out]``."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    history: list[float] = field(default_factory=list)

    @property
    def layer_sizes(self) -> list[int]:
        """Sizes of every layer, input first."""
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    @property
    def n_parameters(self) -> int:
        """Number of weights and biases."""
        return int(sum(w.size for w in self.weights) + sum(b.size for b in self.biases))

    def _forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = h @ w + b
            h = np.tanh(z) if _is_tanh(i, last) else z
            acts.append(h)
        return acts, h

    def score(self, x: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error of each standardised row."""
        x = np.asarray(x, dtype=np.float32)
        _, recon = self._forward(x)
        return np.mean((recon - x) ** 2, axis=1)


def _is_tanh(layer: int, last: int) -> bool:
    # Hidden layers are tanh; the bottleneck (middle of the symmetric stack) and the output are linear.
    return layer != last and layer != last // 2


def train_autoencoder(
    x: np.ndarray,
    hidden: list[int],
    bottleneck: int,
    seed: int,
    epochs: int = 150,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-5,
) -> Autoencoder:
    """Train with Adam on mean squared reconstruction error. ``hidden`` lists the encoder widths
    (the decoder mirrors them). Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    # float32 halves the cost of every matmul; the exported model is float32 anyway.
    x = np.asarray(x, dtype=np.float32)
    n_features = x.shape[1]
    sizes = [n_features, *hidden, bottleneck, *reversed(hidden), n_features]
    weights = []
    biases = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32))
        biases.append(np.zeros(fan_out, dtype=np.float32))
    model = Autoencoder(weights=weights, biases=biases)
    params = weights + biases
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    last = len(weights) - 1
    n = x.shape[0]
    for _epoch in range(epochs):
        order = rng.permutation(n)
        epoch_loss = 0.0
        for start in range(0, n, batch_size):
            batch = x[order[start : start + batch_size]]
            acts, recon = model._forward(batch)
            diff = recon - batch
            epoch_loss += float(np.sum(diff**2))
            grad = diff * np.float32(2.0 / (batch.shape[0] * n_features))
            grads_w = [None] * len(weights)
            grads_b = [None] * len(weights)
            for i in range(last, -1, -1):
                if _is_tanh(i, last):
                    grad = grad * (1.0 - acts[i + 1] ** 2)
                grads_w[i] = acts[i].T @ grad + np.float32(weight_decay) * weights[i]
                grads_b[i] = grad.sum(axis=0)
                if i > 0:
                    grad = grad @ weights[i].T
            step += 1
            for j, g in enumerate(grads_w + grads_b):
                m[j] *= beta1
                m[j] += (1 - beta1) * g
                v[j] *= beta2
                v[j] += (1 - beta2) * g * g
                lr_t = np.float32(learning_rate * np.sqrt(1 - beta2**step) / (1 - beta1**step))
                params[j] -= lr_t * m[j] / (np.sqrt(v[j]) + np.float32(eps))
        model.history.append(epoch_loss / (n * n_features))
    return model


def to_onnx(model: Autoencoder, graph_name: str = "press_anomaly") -> onnx.ModelProto:
    """Build the ONNX graph: Gemm/Tanh layers, then mean squared error per row -> ``score [N]``."""
    n_features = model.layer_sizes[0]
    nodes = []
    inits = []
    h = INPUT_NAME
    last = len(model.weights) - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        wn, bn, out = f"layer{i}.weight", f"layer{i}.bias", f"layer{i}.linear"
        inits.append(numpy_helper.from_array(w.astype(np.float32), wn))
        inits.append(numpy_helper.from_array(b.astype(np.float32), bn))
        nodes.append(helper.make_node("Gemm", [h, wn, bn], [out], name=f"layer{i}/Gemm"))
        h = out
        if _is_tanh(i, last):
            act = f"layer{i}.tanh"
            nodes.append(helper.make_node("Tanh", [h], [act], name=f"layer{i}/Tanh"))
            h = act
    nodes += [
        helper.make_node("Sub", [h, INPUT_NAME], ["residual"], name="score/Sub"),
        helper.make_node("Mul", ["residual", "residual"], ["squared"], name="score/Mul"),
        helper.make_node("ReduceMean", ["squared"], [OUTPUT_NAME], name="score/ReduceMean", axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        graph_name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch"])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="forgeline_ml")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def score_node_names(proto: onnx.ModelProto) -> list[str]:
    """Nodes that compute the score from the reconstruction; kept in float when quantizing."""
    return [n.name for n in proto.graph.node if n.name.startswith("score/")]
