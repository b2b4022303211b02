"""Two-view self-distillation (DDGSD): one network taught by two distortions of the same batch.

Each training batch is distorted twice by the same random operation (per-sample crop + flip)
into views ``a`` and ``b`` that share their labels; the one network (one shared classifier) is
trained on

    L = CE(z_a, y) + CE(z_b, y)
      + kl_weight * T^2 * [ KL(sg(p_b^T) || p_a^T) + KL(sg(p_a^T) || p_b^T) ]
      + mmd_weight * || mean_i h(x_a,i) - mean_i h(x_b,i) ||_2^2

with ``h`` the global feature vector (the input of the final dense layer). Evaluation and
prediction use one undistorted view.

Reference: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks",
AAAI 2019 (eqs. 1-5).
"""

from __future__ import annotations

import copy

import keras
from keras import ops

from keras_sd import losses, validation
from keras_sd.layers.augment import (  # noqa: F401 (the constants are re-exported)
    DISTORTION_KINDS,
    PAD_CROP_PREFIXES,
    build_distortion,
    default_distortion_spec,
)
from keras_sd.models.base import OUTPUT, SelfDistillationModel

VIEWS = ("concat", "separate")


@keras.saving.register_keras_serializable(package="keras_sd")
class TwoViewDistiller(SelfDistillationModel):
    """Data-distortion guided self-distillation (DDGSD) of a single backbone.

    Inside `train_step` the (raw or normalised) batch is distorted twice by ``distortion``, a
    Keras layer the model owns, each call drawing new per-sample randomness from the layer's
    seed generators, so ``model.fit(images, labels)`` works on un-augmented batches. Feed it
    batches that are *not* already augmented (``keras_sd.data.load(..., augment="none")``),
    or each view is distorted twice.

    Loss terms (each logged, with the weighted ``loss``):

    - ``ce_loss``: ``CE(z_a, y) + CE(z_b, y)`` per sample (weight 1). At evaluation it is the
      cross entropy of the single undistorted view, so ``val_ce_loss`` is on a one-view scale,
      about half of the training ``ce_loss``.
    - ``kl_loss``: ``KL(sg(p_b^T) || p_a^T) + KL(sg(p_a^T) || p_b^T)`` per sample (weight
      ``kl_weight``, the paper's lambda), times ``T^2`` with ``kl_scale="t2"``. Each direction sends
      gradient only into its learner view, the mutual-learning gradient ``p_a - p_b`` of the paper.
    - ``mmd_loss``: ``||mean_i h_a,i - mean_i h_b,i||_2^2``, one scalar per batch (weight
      ``mmd_weight``, the paper's mu); both views receive gradient. Under ``tf.distribute`` it is
      computed per replica on the local batch.

    Evaluation (`test_step`) and prediction use one undistorted view and compute ``ce_loss``
    only; the KL and MMD terms are not computed there, so their ``val_`` logs read 0. Training
    accuracy is measured on view ``a``.

    The ablations of the paper's Table 6 are configurations: two branches only
    (``kl_weight=0, mmd_weight=0``), MMD only (``kl_weight=0``), KL only (``mmd_weight=0``) and
    both (the defaults). Terms with weight 0 are still computed and logged. Each weight lives in
    the variable ``term_weights[term]`` (e.g. ``kl_loss_weight``), so a callback can schedule it.

    Args:
        backbone: A keras_sd contract backbone (``{"stages", "features", "logits"}``).
        distortion: The training distortion: a Keras layer (identity when ``training=False``,
            drawing independent randomness per sample and per call), a string spec (``"cifar"``,
            ``"imagenet"``, ``"none"``, ``"pad_crop:P"``, ``"pad_crop_flip:P"``, see
            `build_distortion`), or None for `default_distortion_spec` of the backbone's input
            shape (pad-4 crop + flip at 32x32x3, the paper's CIFAR distortion).
        temperature: Softening temperature ``T > 0`` of the KL term. The paper uses 2 on CIFAR-10
            and 3 on CIFAR-100 and ImageNet.
        kl_weight: ``lambda`` >= 0, the weight of the symmetric KL term (paper: 1).
        mmd_weight: ``mu`` >= 0, the weight of the MMD term (paper: 1e-4 ... 5e-4).
        kl_scale: ``"none"`` (default) leaves the KL as it is; ``"t2"`` multiplies it by ``T^2``
            (Hinton et al.) so its gradient does not shrink with ``T``. The paper does not state
            the factor: the gradient it derives for each branch (``p_a - p_b``) has no ``T``
            factor, it takes lambda = 1 from deep mutual learning, which has no ``T^2``, and no
            authors' code was released, so a pilot on a validation split decided the default
            (docs/methods/two_view.md, "Fidelity").
        views: ``"concat"`` runs one backbone pass over the ``2n`` concatenated views (one
            batch-norm batch, faster); ``"separate"`` runs two passes of ``n`` (batch-norm
            statistics per view). The paper does not say which it used.
        weight_decay: Coupled L2 coefficient (PyTorch SGD style), >= 0.
        seed: Seed of the distortion built from ``None`` or a string spec; must be None when
            ``distortion`` is a layer (which owns its own seeds).
        **kwargs: `keras.Model` arguments (``name``).

    Reference: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks",
    AAAI 2019.
    """

    def __init__(
        self,
        backbone: keras.Model,
        *,
        distortion: keras.layers.Layer | str | None = None,
        temperature: float = 3.0,
        kl_weight: float = 1.0,
        mmd_weight: float = 5e-4,
        kl_scale: str = "none",
        views: str = "concat",
        weight_decay: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        temperature = validation.positive(temperature, "temperature")
        kl_weight = validation.non_negative(kl_weight, "kl_weight")
        mmd_weight = validation.non_negative(mmd_weight, "mmd_weight")
        losses.check_kl_scale(kl_scale)
        validation.one_of(views, "views", VIEWS)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
        if isinstance(distortion, keras.layers.Layer) and seed is not None:
            raise ValueError(
                f"`seed` must be None when `distortion` is a layer (the layer owns its seeds), "
                f"got seed={seed!r} with distortion={distortion.name!r}."
            )
        if distortion is not None and not isinstance(distortion, (keras.layers.Layer, str)):
            raise ValueError(
                "`distortion` must be None, a keras.layers.Layer or a string spec, got "
                f"{type(distortion).__name__} {distortion!r}."
            )
        super().__init__(
            backbone,
            loss_weights={"ce_loss": 1.0, "kl_loss": kl_weight, "mmd_loss": mmd_weight},
            weight_decay=weight_decay,
            **kwargs,
        )
        self.temperature = temperature
        self.kl_weight = kl_weight
        self.mmd_weight = mmd_weight
        self.kl_scale = kl_scale
        self.views = views
        self.seed = seed
        # What get_config returns: None or the string spec (a given layer is serialised instead).
        # Kept apart from the layer so that Keras tracks the layer under one attribute only.
        self.distortion_spec = None if isinstance(distortion, keras.layers.Layer) else distortion
        self.distortion_is_layer = isinstance(distortion, keras.layers.Layer)
        image_shape = tuple(backbone.input_shape[1:])
        if isinstance(distortion, keras.layers.Layer):
            layer = distortion
        else:
            if len(image_shape) != 3 or any(v is None for v in image_shape):
                raise ValueError(
                    "`distortion` must be a keras.layers.Layer when the backbone's input shape is "
                    f"not a fixed (H, W, C); got input shape {backbone.input_shape} and "
                    f"distortion={distortion!r}."
                )
            spec = default_distortion_spec(image_shape) if distortion is None else distortion
            layer = build_distortion(spec, image_shape, seed)
        if not layer.built:
            # Built now so that a freshly loaded model has the same variables (seed states) as
            # the saved one before its first training step.
            layer.build([None, *image_shape])  # a list, as Keras restores build configs
        self.distortion = layer

    # ------------------------------------------------------------------ method
    def make_views(self, images):
        """Two independently distorted copies ``(x_a, x_b)`` of ``images`` (training mode)."""
        return self.distortion(images, training=True), self.distortion(images, training=True)

    def _forward_views(self, x_a, x_b):
        if self.views == "concat":
            n = ops.shape(x_a)[0]
            out = self.backbone(ops.concatenate([x_a, x_b], axis=0), training=True)
            z, h = out["logits"], out["features"]
            return z[:n], z[n:], h[:n], h[n:]
        out_a = self.backbone(x_a, training=True)
        out_b = self.backbone(x_b, training=True)
        return out_a["logits"], out_b["logits"], out_a["features"], out_b["features"]

    def loss_terms(self, logits_a, logits_b, features_a, features_b, targets) -> dict:
        """The three DDGSD terms from the two views' logits and global features.

        Returns:
            ``{"ce_loss": [batch], "kl_loss": [batch], "mmd_loss": scalar}``, unweighted.
        """
        ce = losses.soft_target_cross_entropy(targets, logits_a) + losses.soft_target_cross_entropy(
            targets, logits_b
        )
        kl = losses.symmetric_kl(logits_a, logits_b, self.temperature, self.kl_scale)
        mmd = losses.mean_feature_mmd(features_a, features_b)
        return {"ce_loss": ce, "kl_loss": kl, "mmd_loss": mmd}

    def compute_loss_terms(self, images, targets, training: bool, index=None):
        if not training:
            # One undistorted view; KL and MMD need two views and are not computed.
            logits = self.backbone(images, training=False)["logits"]
            return {OUTPUT: logits}, {"ce_loss": losses.soft_target_cross_entropy(targets, logits)}
        x_a, x_b = self.make_views(images)
        z_a, z_b, h_a, h_b = self._forward_views(x_a, x_b)
        return {OUTPUT: z_a}, self.loss_terms(z_a, z_b, h_a, h_b, targets)

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        config = super().get_config()
        distortion = self.distortion_spec
        if self.distortion_is_layer:
            distortion = keras.saving.serialize_keras_object(self.distortion)
        config.update(
            {
                "distortion": distortion,
                "temperature": self.temperature,
                "kl_weight": self.kl_weight,
                "mmd_weight": self.mmd_weight,
                "kl_scale": self.kl_scale,
                "views": self.views,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # deserialisation consumes nested dicts
        if isinstance(config.get("distortion"), dict):
            config["distortion"] = keras.saving.deserialize_keras_object(config["distortion"])
        return super().from_config(config)
