"""Early stopping for an optimizer that averages the weights (`use_ema=True`)."""

import math

import keras

from tfp_nice.models.training import averaged_weights

__all__ = ["AveragedEarlyStopping"]


class AveragedEarlyStopping(keras.callbacks.Callback):
    """Stops on the validation NLL of the weights `fit` leaves: the optimizer's averages.

    Keras's `EarlyStopping` judges the raw weights, and its `restore_best_weights`
    would, at the end of training, overwrite the averages `fit` has just written
    into the model. This callback scores the averages (`averaged_weights`) on
    `x_val` after every epoch, adds the figure to the logs as `val_averaged_nll`,
    stops after `patience` epochs without a better one, and at the end of
    training puts in the averages of the best epoch.
    """

    def __init__(self, x_val, patience, batch_size=256):
        super().__init__()
        self.x_val, self.patience = x_val, int(patience)
        self.batch_size = max(int(batch_size), 256)

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.best_weights, self.wait = math.inf, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        with averaged_weights(self.model):
            nll = self.model.evaluate(self.x_val, batch_size=self.batch_size, verbose=0,
                                      return_dict=True)["nll"]
            if nll < self.best:
                self.best, self.best_epoch, self.wait = nll, epoch, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
        if logs is not None:
            logs["val_averaged_nll"] = nll
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):  # Keras wrote the last averages in just before
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
