"""Where section 8's training time goes: each convolution of a coupling network, timed alone.

    python benchmarks/conv_layers.py [--torch]

For every layer of the 64-channel 3x3 -> 1x1 -> 3x3 coupling networks of `glow_mnist()`'s
layout (at 14x14 and at 7x7, batch 64, float32), the forward pass and the forward plus both
gradients (input and kernel) in a `tf.function`, then TensorFlow's two gradient kernels
alone; with `--torch`, the whole network's forward and backward in TensorFlow and in
PyTorch. Run it with `TF_ENABLE_ONEDNN_OPTS=0` to see TensorFlow without oneDNN.
"""
import argparse
import time

import tensorflow as tf

LAYERS = [(14, 2, 64, 3), (14, 64, 64, 1), (14, 64, 4, 3),  # (side, in, out, kernel)
          (7, 4, 64, 3), (7, 64, 64, 1), (7, 64, 8, 3)]
BATCH = 64


def best_ms(fn, calls=30, rounds=5):
    fn(), fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn()
        (out[0] if isinstance(out, (list, tuple)) else out).numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def layer_times(side, cin, cout, k):
    x = tf.random.normal((BATCH, side, side, cin))
    w = tf.Variable(tf.random.normal((k, k, cin, cout)))
    dy = tf.random.normal((BATCH, side, side, cout))
    strides = [1, 1, 1, 1]

    @tf.function
    def both():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") ** 2)
        return tape.gradient(y, [w, x])

    forward = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    grad_input = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides, padding="SAME"))
    grad_kernel = tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides, padding="SAME"))
    return [best_ms(f) for f in (forward, both, grad_input, grad_kernel)]


def networks(side, cin, cout):
    import keras
    import torch

    net = keras.Sequential([keras.Input((side, side, cin)),
                            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                            keras.layers.Conv2D(64, 1, activation="relu"),
                            keras.layers.Conv2D(cout, 3, padding="same")])
    x = tf.random.normal((BATCH, side, side, cin))

    @tf.function
    def tf_step():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(net(x) ** 2)
        return tape.gradient(y, net.trainable_weights)

    tnet = torch.nn.Sequential(torch.nn.Conv2d(cin, 64, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, 64, 1), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, cout, 3, padding=1))
    tx = torch.randn(BATCH, cin, side, side)

    def torch_step():
        tnet.zero_grad()
        (tnet(tx) ** 2).sum().backward()
        return [tf.constant(0.0)]

    return best_ms(tf_step), best_ms(torch_step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="also the whole networks in PyTorch")
    args = parser.parse_args()
    print("| layer | forward ms | forward + both gradients ms | input gradient ms "
          "| kernel gradient ms |\n| --- | --- | --- | --- | --- |")
    for side, cin, cout, k in LAYERS:
        times = layer_times(side, cin, cout, k)
        print(f"| {side}x{side}, {cin} -> {cout}, {k}x{k} | "
              + " | ".join(f"{t:.2f}" for t in times) + " |")
    if args.torch:
        print("\n| network | TensorFlow ms | PyTorch ms | ratio |\n| --- | --- | --- | --- |")
        for side, cin, cout in [(14, 2, 4), (7, 4, 8)]:
            a, b = networks(side, cin, cout)
            print(f"| {side}x{side}, {cin} -> 64 -> 64 -> {cout} | {a:.2f} | {b:.2f} "
                  f"| {a / b:.2f} |")


if __name__ == "__main__":
    main()
