"""Summary networks for the observations people condition posteriors on: sets of i.i.d.
observations (`DeepSet`, permutation invariant, variable set sizes) and time series
(`TimeSeriesNet`, 1-D convolutions). Each is a Keras 3 layer, given to `posterior_flow` as
`embedding=`, trained with the flow and saved with it.

Each standardises its own input from the training rows (`adapt`, which `PosteriorFlow`'s
data-dependent start calls in place of its per-entry standardisation): per feature, pooled
over the set's members or the series' time steps, so that the standardisation keeps the
symmetry the network has."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfp_nice._validation import check_choice, check_int

__all__ = ["POOLINGS", "DeepSet", "TimeSeriesNet"]

POOLINGS = ("mean", "sum", "max")


def _dense_stack(units, activation, dtype, prefix):
    return [keras.layers.Dense(u, activation=activation, dtype=dtype, name=f"{prefix}_{k}")
            for k, u in enumerate(units)]


class _Standardised(keras.layers.Layer):
    """A layer whose input features are standardised by weights `adapt` sets."""

    def _standardisation(self, features):
        self.feature_mean = self.add_weight(shape=(features,), initializer="zeros",
                                            trainable=False, name="feature_mean",
                                            autocast=False)
        self.feature_std = self.add_weight(shape=(features,), initializer="ones",
                                           trainable=False, name="feature_std",
                                           autocast=False)

    def _set_standardisation(self, values):
        values = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
        if len(values) == 0:
            return
        std = values.std(axis=0)
        self.feature_mean.assign(values.mean(axis=0).astype(self.feature_mean.dtype))
        self.feature_std.assign(np.where(std > 0, std, 1.0).astype(self.feature_std.dtype))

    def _standardise(self, x):
        return (x - tf.cast(self.feature_mean, x.dtype)) / tf.cast(self.feature_std, x.dtype)


@keras.saving.register_keras_serializable(package="tfp_nice")
class DeepSet(_Standardised):
    """A permutation-invariant summary of a set of i.i.d. observations (Zaheer et al. 2017):
    each member through a dense network `phi`, pooled over the members, then a dense
    network `rho` to `output_units` summary statistics.

    Input rows have shape `(max_members, features)`. With `masked=True` the last feature is
    a presence flag (1 for a member, 0 for padding) and the other features are the member's,
    so sets of different sizes share one array: padding is left out of the pooling and of
    the standardisation, and `log(1 + members present)` is given to `rho` beside the pooled
    features (a posterior depends on how many observations there were; the padding's length
    does not matter).

    `adapt(rows)` sets the per-feature standardisation from the members of the training
    rows; `PosteriorFlow` calls it once, at its data-dependent start.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> net = tn.sbi.DeepSet(output_units=4, features=2, masked=True)
        >>> rows = np.zeros((3, 5, 3), "float32")
        >>> rows[:, :2, 2] = 1.0  # two members present in each set of up to five
        >>> tuple(net(rows).shape)
        (3, 4)
    """

    def __init__(self, output_units: int, features: int, member_units: Sequence[int] = (64, 64),
                 head_units: Sequence[int] = (64,), pooling: str = "mean",
                 masked: bool = False, activation: str = "relu", **kwargs: Any) -> None:
        """Builds the layer.

        Args:
          output_units: the number of summary statistics.
          features: the features of one member (without the presence flag).
          member_units: `phi`'s hidden layers (its last is the pooled width).
          head_units: `rho`'s hidden layers.
          pooling: `"mean"`, `"sum"` or `"max"` over the members.
          masked: the last input feature is a presence flag.
          activation: the hidden layers' activation.
          **kwargs: passed to `keras.layers.Layer`.
        """
        super().__init__(**kwargs)
        self.output_units = check_int(output_units, "output_units")
        self.features = check_int(features, "features")
        self.member_units = tuple(check_int(u, "member_units entry") for u in member_units)
        self.head_units = tuple(check_int(u, "head_units entry") for u in head_units)
        if not self.member_units:
            raise ValueError("member_units needs at least one layer (the pooled width).")
        self.pooling = check_choice(pooling, POOLINGS, "pooling")
        self.masked = bool(masked)
        self.activation = activation
        self._standardisation(self.features)
        self.phi = _dense_stack(self.member_units, activation, self.dtype_policy, "phi")
        self.rho = _dense_stack(self.head_units, activation, self.dtype_policy, "rho")
        self.out = keras.layers.Dense(self.output_units, dtype=self.dtype_policy, name="out")

    def _check(self, input_shape):
        width = self.features + (1 if self.masked else 0)
        if len(input_shape) != 3 or input_shape[-1] != width:
            raise ValueError(f"{self.name}: a DeepSet over members of {self.features} "
                             f"features{' and a presence flag' if self.masked else ''} takes "
                             f"rows of shape (max_members, {width}); got input shape "
                             f"{tuple(input_shape)}.")

    def build(self, input_shape: Any) -> None:
        self._check(input_shape)
        shape = (None, self.features)
        for layer in self.phi:
            layer.build(shape)
            shape = (None, layer.units)
        shape = (None, shape[1] + (1 if self.masked else 0))
        for layer in self.rho:
            layer.build(shape)
            shape = (None, layer.units)
        self.out.build(shape)
        self.built = True

    def _split(self, rows):
        if not self.masked:
            return rows, None
        return rows[..., :-1], rows[..., -1]

    def adapt(self, rows: Any) -> None:
        """Sets the per-feature mean and standard deviation from the members of `rows`."""
        rows = np.asarray(rows)
        members, present = (rows[..., :-1], rows[..., -1]) if self.masked else (rows, None)
        if present is not None:
            members = members[present > 0.5]
        self._set_standardisation(members)

    def call(self, rows: Any) -> Any:
        self._check(tuple(rows.shape))
        members, present = self._split(rows)
        h = self._standardise(members)
        for layer in self.phi:
            h = layer(h)
        if present is None:
            pooled = {"mean": keras.ops.mean, "sum": keras.ops.sum,
                      "max": keras.ops.max}[self.pooling](h, axis=1)
        else:
            weight = keras.ops.cast(present > 0.5, h.dtype)[..., None]
            count = keras.ops.sum(weight, axis=1)
            if self.pooling == "max":
                pooled = keras.ops.max(h + (weight - 1.0) * 1e9, axis=1)
                pooled = keras.ops.where(count > 0, pooled, keras.ops.zeros_like(pooled))
            else:
                pooled = keras.ops.sum(h * weight, axis=1)
                if self.pooling == "mean":
                    pooled = pooled / keras.ops.maximum(count, 1.0)
            pooled = keras.ops.concatenate([pooled, keras.ops.log1p(count)], axis=-1)
        for layer in self.rho:
            pooled = layer(pooled)
        return self.out(pooled)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.output_units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_units": self.output_units,
                "features": self.features, "member_units": list(self.member_units),
                "head_units": list(self.head_units), "pooling": self.pooling,
                "masked": self.masked, "activation": self.activation}


@keras.saving.register_keras_serializable(package="tfp_nice")
class TimeSeriesNet(_Standardised):
    """A summary of a time series `(steps, channels)`: 1-D convolutions (same padding,
    each followed by a max-pooling of 2 when `pool`), a global average over time, and a
    dense head to `output_units` summary statistics.

    `adapt(rows)` sets the per-channel standardisation over the training rows' time steps;
    `PosteriorFlow` calls it once, at its data-dependent start.

    Examples:
        >>> import numpy as np
        >>> import tfp_nice as tn
        >>> net = tn.sbi.TimeSeriesNet(output_units=3, channels=2, filters=(8, 8))
        >>> tuple(net(np.zeros((4, 50, 2), "float32")).shape)
        (4, 3)
    """

    def __init__(self, output_units: int, channels: int, filters: Sequence[int] = (32, 32),
                 kernel_size: int = 5, pool: bool = True, head_units: Sequence[int] = (64,),
                 activation: str = "relu", **kwargs: Any) -> None:
        """Builds the layer.

        Args:
          output_units: the number of summary statistics.
          channels: the series' channels (features per time step).
          filters: each convolution's filters.
          kernel_size: the convolutions' width in time steps.
          pool: halve the time axis after each convolution.
          head_units: the dense head's hidden layers.
          activation: the hidden layers' activation.
          **kwargs: passed to `keras.layers.Layer`.
        """
        super().__init__(**kwargs)
        self.output_units = check_int(output_units, "output_units")
        self.channels = check_int(channels, "channels")
        self.filters = tuple(check_int(f, "filters entry") for f in filters)
        self.kernel_size = check_int(kernel_size, "kernel_size")
        self.pool = bool(pool)
        self.head_units = tuple(check_int(u, "head_units entry") for u in head_units)
        self.activation = activation
        self._standardisation(self.channels)
        self.convs = [keras.layers.Conv1D(f, self.kernel_size, padding="same",
                                          activation=activation, dtype=self.dtype_policy,
                                          name=f"conv_{k}") for k, f in enumerate(self.filters)]
        self.head = _dense_stack(self.head_units, activation, self.dtype_policy, "head")
        self.out = keras.layers.Dense(self.output_units, dtype=self.dtype_policy, name="out")

    def _check(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] != self.channels:
            raise ValueError(f"{self.name}: a TimeSeriesNet over {self.channels} channels "
                             f"takes rows of shape (steps, {self.channels}); got input shape "
                             f"{tuple(input_shape)}.")

    def build(self, input_shape: Any) -> None:
        self._check(input_shape)
        steps = input_shape[1]
        shape: tuple = (None, steps, self.channels)
        for conv in self.convs:
            conv.build(shape)
            if self.pool and steps is not None:
                steps = max(1, steps // 2)
            shape = (None, steps, conv.filters)
        shape = (None, shape[-1])
        for layer in self.head:
            layer.build(shape)
            shape = (None, layer.units)
        self.out.build(shape)
        self.built = True

    def adapt(self, rows: Any) -> None:
        """Sets the per-channel mean and standard deviation over the rows' time steps."""
        self._set_standardisation(np.asarray(rows))

    def call(self, rows: Any) -> Any:
        self._check(tuple(rows.shape))
        h = self._standardise(rows)
        for conv in self.convs:
            h = conv(h)
            if self.pool and h.shape[1] is not None and h.shape[1] >= 2:
                h = keras.ops.max_pool(h, 2, 2)
        h = keras.ops.mean(h, axis=1)
        for layer in self.head:
            h = layer(h)
        return self.out(h)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.output_units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_units": self.output_units,
                "channels": self.channels, "filters": list(self.filters),
                "kernel_size": self.kernel_size, "pool": self.pool,
                "head_units": list(self.head_units), "activation": self.activation}
