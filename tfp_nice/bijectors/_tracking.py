"""Making the Keras 3 weights a bijector uses visible to TFP's variable tracking.

TFP finds a distribution's or bijector's variables (`trainable_variables`,
`variables`, `tfp.math.minimize`) by `tf.Module` attribute tracking, which sees
`tf.Variable`s and `tf.Module`s only. Keras 3 variables and layers are neither,
so a bijector holding them would report no variables at all. A bijector keeps
the `tf.Variable` behind each Keras variable it uses in an attribute, which is
what `tf.Module` tracking walks; the computation still reads the Keras
variable itself (so Keras's autocast and stateless scopes apply as usual).
"""

import keras
import tensorflow as tf

from tfp_nice import _private_api


def backing_variables(*objects):
    """The `tf.Variable`s behind the Keras variables and layers in `objects`.

    A Keras layer contributes every weight it has (trainable or not). Plain
    `tf.Variable`s and tensors are left out: TFP's tracking already sees the
    former, and the latter hold no state. The result has no duplicates.
    """
    found, seen = [], set()
    for obj in objects:
        if isinstance(obj, keras.layers.Layer):
            candidates = obj.weights
        elif isinstance(obj, keras.Variable) and not isinstance(obj, tf.Variable):
            candidates = [obj]
        else:
            candidates = []
        for variable in candidates:
            backing = _private_api.backing_variable(variable)
            if backing is not None and id(backing) not in seen:
                seen.add(id(backing))
                found.append(backing)
    return tuple(found)


def trackable(value):
    """`value`, or the `tf.Variable` behind it if it is a Keras variable.

    Composite-tensor bijectors (`tfb.AutoCompositeTensorBijector`) are seen by
    `tf.Module` tracking through their parameters: holding the `tf.Variable`
    there lets TFP find it when the bijector sits inside a chain.
    """
    if isinstance(value, keras.Variable) and not isinstance(value, tf.Variable):
        backing = _private_api.backing_variable(value)
        if backing is not None:
            return backing
    return value


def build_layer(fn, input_shape):
    """Builds an unbuilt Keras layer `fn` for `input_shape`, so its weights exist.

    Only layers that create their weights in `build` (those that override it,
    like `Dense`, `Sequential` and `CouplingMLP`) are built; the shape given is
    the one the layer will be called with.
    """
    if (isinstance(fn, keras.layers.Layer) and not fn.built
            and type(fn).build is not keras.layers.Layer.build):
        fn.build(input_shape)
