"""A transformer as a user writes it, in a file of its own: the sinh-arcsinh map.

    y = sinh(exp(b) * asinh(x) + a),   dy/dx = exp(b) cosh(exp(b) asinh(x) + a) / sqrt(1 + x^2)

Two raw parameters per entry (`a`, then `b`); zero parameters give the identity. It
changes the tails (`b`) and skews (`a`), which no affine map does.
"""

import keras
import tensorflow as tf

import tfp_nice as tn


@keras.saving.register_keras_serializable(package="user")
class SinhArcsinh(tn.Transformer):
    params_per_entry = 2

    def forward(self, x, params):
        a, b = params[..., 0], params[..., 1]
        v = tf.exp(b) * tf.asinh(x) + a
        log_det = b + tf.math.log(tf.cosh(v)) - 0.5 * tf.math.log1p(x * x)
        return tf.sinh(v), log_det

    def inverse(self, y, params):
        a, b = params[..., 0], params[..., 1]
        v = tf.asinh(y)
        x = tf.sinh((v - a) * tf.exp(-b))
        log_det = -(b + tf.math.log(tf.cosh(v)) - 0.5 * tf.math.log1p(x * x))
        return x, log_det
