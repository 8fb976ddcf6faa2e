"""The names users choose among (partitions, couplings, permutations, inpainting masks,
presets).

They live here, away from TensorFlow, so that the command line can offer them in its
`--help` without importing TensorFlow; the modules that act on them import them from here.
"""

PARTITIONS = ("halves", "odd_even", "checkerboard", "channel")
COUPLING_KINDS = ("additive", "affine", "spline")
PERMUTATIONS = (None, "reverse", "random", "lu")
FLOWS = ("nice", "multiscale", "maf", "iaf")  # what `tfp-nice train --flow` builds
HIDE = ("bottom", "top", "left", "right", "random")
PRESETS = ("affine_mnist", "glow_mnist", "nice_mnist")  # the functions of tfp_nice.presets for --preset
