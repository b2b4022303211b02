"""`AttentionMaps`: the attention masks of a multi-exit model's exits, per epoch (TPAMI Fig. 3a)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.callbacks._summary import _SummaryCallback, take_images
from keras_sd.models.multi_exit import MultiExitDistiller
from keras_sd.plotting import attention_panels


def has_attention_exits(model) -> bool:
    """True for a `MultiExitDistiller` whose shallow exits have attention modules."""
    return isinstance(model, MultiExitDistiller) and all(
        # A bottleneck exit head has no attention module at all.
        getattr(h, "attention_module", None) is not None
        for h in model.exit_heads
    )


class AttentionMaps(_SummaryCallback):
    """Attention masks of every shallow exit on a fixed set of validation images, per epoch.

    Writes ``attention/exit<i>``: one panel per image, the image next to the channel-mean of the
    exit's attention mask (`keras_sd.layers.exits.ExitAttention.attention_mask`, inference mode),
    min-max scaled per image. The images are the first ``num_images`` of ``validation_data``,
    taken once, so epochs compare on the same images.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Fig. 3(a) and Fig. 6 (attention visualisation).

    Args:
        log_dir: TensorBoard log directory (images go to ``<log_dir>/validation``).
        validation_data: dataset or ``(x, y)`` tuple the images are taken from.
        num_images: how many images.
        every_n_epochs: write every n-th epoch (and always the last one).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        validation_data,
        *,
        num_images: int = 4,
        every_n_epochs: int = 1,
    ):
        super().__init__(log_dir)
        validation.positive_int(every_n_epochs, "every_n_epochs")
        self.images, _ = take_images(validation_data, num_images)
        self.every_n_epochs = every_n_epochs

    def masks(self) -> list[np.ndarray]:
        """Attention mask of every shallow exit, ``[num_images, h_i, w_i, C_i]``, shallow first."""
        model = self.model
        if not has_attention_exits(model):
            raise ValueError(
                f"AttentionMaps needs a MultiExitDistiller with attention exits, got "
                f"{type(model).__name__}."
            )
        x = tf.convert_to_tensor(self.images, dtype="float32")
        maps = model.exit_graph.feature_maps(x, training=False)
        return [
            np.asarray(head.attention_module.attention_mask(m, training=False))
            for head, m in zip(model.exit_heads, maps)
        ]

    def on_train_begin(self, logs=None):
        if not has_attention_exits(self.model):
            raise ValueError(
                f"AttentionMaps needs a MultiExitDistiller with attention exits, got "
                f"{type(self.model).__name__}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if not self.writes_epoch(epoch):
            return
        with self.writer.as_default():
            for i, mask in enumerate(self.masks(), start=1):
                panels = attention_panels(self.images, mask)
                tf.summary.image(f"attention/exit{i}", panels, step=epoch, max_outputs=len(panels))
        self.writer.flush()


__all__ = ["AttentionMaps", "has_attention_exits"]
