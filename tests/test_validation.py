"""One message style for bad arguments everywhere: "name must be ... Received: name=value"."""

import numpy as np
import pytest

import tfp_nice as tn
from tfp_nice.data import bits_per_dim, dequantize, two_moons


@pytest.mark.parametrize("call,message", [
    (lambda: tn.NICE((6,), num_couplings=0), "num_couplings must be an int >= 1. Received: "
                                             "num_couplings=0"),
    (lambda: tn.NICE((6,), num_couplings=True), "Received: num_couplings=True"),
    (lambda: tn.NICE((6,), hidden_units=(8, 2.5)), "hidden_units entry must be an int >= 1. "
                                                   "Received: hidden_units entry=2.5"),
    (lambda: tn.NICE((6,), num_levels=1), "num_levels must be an int >= 2. Received: "
                                          "num_levels=1"),
    (lambda: tn.NICE((6,), coupling="quadratic"), "coupling must be one of ('additive', "
                                                  "'affine', 'spline'). Received: "
                                                  "coupling='quadratic'"),
    (lambda: tn.NICE((6,), permutation="shuffle"), "Received: permutation='shuffle'"),
    (lambda: tn.NICE((6,), actnorm=1), "actnorm must be True or False. Received: actnorm=1"),
    (lambda: tn.NICE((6,), rescaling_init="ones"), "Received: rescaling_init='ones'"),
    (lambda: tn.NICE((6,), hidden_units=(4,)).sample(-1), "num_samples must be an int >= 0. "
                                                          "Received: num_samples=-1"),
    (lambda: tn.NICE((6,), hidden_units=(4,)).sample(2, temperature=0.0),
     "temperature must be a finite number > 0. Received: temperature=0.0"),
    (lambda: tn.NICE((2,), hidden_units=(4,)).inpaint(np.zeros((1, 2)), np.array([True, False]),
                                                      num_steps=0),
     "num_steps must be an int >= 1. Received: num_steps=0"),
    (lambda: tn.CouplingMLP((4,), 0), "output_units must be an int >= 1. Received: "
                                      "output_units=0"),
    (lambda: two_moons(0), "n must be an int >= 1. Received: n=0"),
    (lambda: dequantize(np.zeros(3, int), 1), "num_levels must be an int >= 2. Received: "
                                               "num_levels=1"),
    (lambda: bits_per_dim(1.0, 0), "num_dims must be an int >= 1. Received: num_dims=0"),
])
def test_bad_arguments_name_what_was_expected_and_received(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
