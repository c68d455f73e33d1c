"""Adapter cost: each adapter's run() against a minimal hand-written script making the same framework
calls (same tensors in, every quantity out as NumPy), on a tiny case (cases/examples/sum_3x3_f32.yaml)
and a large one (benchmarks/cases/large_net.yaml). Target: <= 1.2x on the large case.
Also TensorFlow eager against tf.function for the tiny case: a case runs once, so tracing is paid
every time; this is the measurement behind running TensorFlow eagerly.
"""
from __future__ import annotations

import os

import numpy as np

try:
    from benchmarks.timing import best_of, best_of_each
except ImportError:  # run as a script from benchmarks/
    from timing import best_of, best_of_each

from gradconf.loader import load_file
from gradconf.tensors import materialize

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "cases", "examples", "sum_3x3_f32.yaml")
LARGE = os.path.join(HERE, "cases", "large_net.yaml")




# ------------------------------------------------------------------ hand-written scripts

def torch_tiny(init):
    import torch
    import torch.nn.functional as F
    x = torch.tensor(init.input, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(init.params["conv.weight"], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.01)
    y = F.conv2d(x, w).sum()
    loss = F.mse_loss(y, torch.tensor(230.0))
    loss.backward()
    out = [loss.detach().double().numpy(), y.detach().double().numpy(), w.grad.double().numpy(), x.grad.double().numpy()]
    opt.step()
    return out + [w.detach().double().numpy()]


def torch_large(init):
    import torch
    import torch.nn.functional as F
    p = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in init.params.items()}
    x = torch.tensor(init.input, dtype=torch.float32, requires_grad=True)
    t = torch.tensor(init.target, dtype=torch.float32)
    opt = torch.optim.SGD(list(p.values()), lr=0.01, momentum=0.9)
    out = []
    for _ in range(2):
        x.grad = None
        for v in p.values():
            v.grad = None
        y = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
        y = F.relu(F.conv2d(y, p["conv2.weight"], p["conv2.bias"], padding=1))
        y = F.linear(torch.flatten(y, 1), p["fc.weight"], p["fc.bias"])
        loss = F.mse_loss(y, t)
        loss.backward()
        out += [loss.detach().double().numpy(), y.detach().double().numpy(), x.grad.double().numpy()]
        out += [v.grad.double().numpy() for v in p.values()]
        opt.step()
        out += [v.detach().double().numpy() for v in p.values()]
    return out


def tf_tiny(init):
    import keras
    import tensorflow as tf
    x = tf.constant(np.transpose(init.input, (0, 2, 3, 1)), tf.float32)
    w = tf.Variable(np.transpose(init.params["conv.weight"], (2, 3, 1, 0)).astype(np.float32))
    opt = keras.optimizers.SGD(learning_rate=0.01)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "VALID"))
        loss = tf.reduce_mean(tf.square(y - 230.0))
    gx, gw = tape.gradient(loss, [x, w])
    out = [loss.numpy(), y.numpy(), np.transpose(gw.numpy(), (3, 2, 0, 1)), np.transpose(gx.numpy(), (0, 3, 1, 2))]
    opt.apply_gradients([(gw, w)])
    return out + [np.transpose(w.numpy(), (3, 2, 0, 1))]


def tf_large(init):
    import keras
    import tensorflow as tf
    conv = lambda a: np.transpose(a, (2, 3, 1, 0)).astype(np.float32)  # noqa: E731
    v = {"conv1.weight": conv(init.params["conv1.weight"]), "conv2.weight": conv(init.params["conv2.weight"]),
         "fc.weight": init.params["fc.weight"].T.astype(np.float32)}
    v.update({k: init.params[k].astype(np.float32) for k in ("conv1.bias", "conv2.bias", "fc.bias")})
    v = {k: tf.Variable(a) for k, a in v.items()}
    x = tf.constant(init.input, tf.float32)
    t = tf.constant(init.target, tf.float32)
    opt = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    out = []
    for _ in range(2):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.transpose(x, (0, 2, 3, 1))
            y = tf.nn.max_pool2d(tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(y, v["conv1.weight"], 1, pad), v["conv1.bias"])), 2, 2, "VALID")
            y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(y, v["conv2.weight"], 1, pad), v["conv2.bias"]))
            y = tf.reshape(tf.transpose(y, (0, 3, 1, 2)), (16, -1))
            y = tf.matmul(y, v["fc.weight"]) + v["fc.bias"]
            loss = tf.reduce_mean(tf.square(y - t))
        grads = tape.gradient(loss, [x, *v.values()])
        out += [loss.numpy(), y.numpy()] + [g.numpy() for g in grads]
        opt.apply_gradients(zip(grads[1:], v.values()))
        out += [a.numpy() for a in v.values()]
    return out


def tf_eager_vs_function(init, repeat):
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")  # retracing every call is the point of this measurement
    x = tf.constant(np.transpose(init.input, (0, 2, 3, 1)), tf.float32)
    w0 = np.transpose(init.params["conv.weight"], (2, 3, 1, 0)).astype(np.float32)

    def step(w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.square(tf.reduce_sum(tf.nn.conv2d(x, w, 1, "VALID")) - 230.0)
        return loss, tape.gradient(loss, w)

    def eager():
        step(tf.constant(w0))

    def traced_once():  # what a per-case tf.function costs: a fresh trace for each new case
        tf.function(step)(tf.constant(w0))

    compiled = tf.function(step)
    compiled(tf.constant(w0))
    return best_of(eager, repeat), best_of(traced_once, repeat), best_of(lambda: compiled(tf.constant(w0)), repeat)


def main(repeat: int = 5) -> list[dict]:
    from gradconf.adapters.tensorflow_adapter import TensorflowAdapter
    from gradconf.adapters.torch_adapter import TorchAdapter
    rows = []
    for label, path, scripts in (("tiny", TINY, {"torch": torch_tiny, "tensorflow": tf_tiny}),
                                 ("large", LARGE, {"torch": torch_large, "tensorflow": tf_large})):
        (case,) = load_file(path)
        init = materialize(case)
        for adapter in (TorchAdapter(), TensorflowAdapter()):
            if adapter.missing():
                continue
            script = scripts[adapter.name]
            a, s = best_of_each([lambda: adapter.run(case, init), lambda: script(init)],
                                repeat if label == "tiny" else 2)
            rows.append({"benchmark": f"adapter vs script ({label})", "framework": adapter.name,
                         "adapter_s": a, "script_s": s, "ratio": a / s})
    if not TensorflowAdapter().missing():
        (case,) = load_file(TINY)
        eager, traced, warm = tf_eager_vs_function(materialize(case), repeat)
        rows.append({"benchmark": "tf eager vs tf.function (tiny)", "framework": "tensorflow", "adapter_s": eager,
                     "script_s": traced, "ratio": traced / eager,
                     "note": f"tf.function: {traced:.4f}s with its trace, {warm:.4f}s once traced"})
    return rows


if __name__ == "__main__":
    from tabulate import tabulate
    print(tabulate(main(), headers="keys", floatfmt=".4f"))
