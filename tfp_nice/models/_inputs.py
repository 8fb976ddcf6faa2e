"""The checks of what a flow model is given: floating data of its dtype, not half precision."""

import tensorflow as tf

__all__ = ["as_flow_input"]


def as_flow_input(x, dtype, policy_name: str, what: str = "x") -> tf.Tensor:
    """`x` as a tensor of the flow's `dtype`, or a `TypeError` that says what to pass.

    Integer data are refused (dequantize them first), and so are half-precision
    data, which would lose the dequantization noise whatever the policy.
    """
    x = tf.convert_to_tensor(x)
    flow = tf.as_dtype(dtype).name
    if not x.dtype.is_floating:
        raise TypeError(f"The flow expects floating {what}, got dtype {x.dtype.name}; "
                        "dequantize integer data first (tfp_nice.data.dequantize).")
    if x.dtype in (tf.float16, tf.bfloat16):
        raise TypeError(
            f"The flow does not take {x.dtype.name} {what}: half precision loses the "
            f"dequantization noise; pass {flow}. The flow takes {flow} under every dtype "
            f"policy (this model's is {policy_name!r}); a mixed-precision policy makes only "
            "the coupling networks compute in half precision.")
    if x.dtype != dtype:
        x = tf.cast(x, dtype)
    return x
