"""Multi-exit self-distillation: shallow exits on a backbone learn from deeper ones.

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI (eqs. 3-6, Fig. 3); Zhang et al., "Be Your Own Teacher: Improve the Performance of
Convolutional Neural Networks via Self Distillation", ICCV 2019. Options from
Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual Learning": PS-KD soft
targets on every exit (Kim et al., "Self-Knowledge Distillation with Progressive Refinement of
Targets", ICCV 2021), the deep mutual feature loss (eq. 3), the final exit's cross-entropy weight
of their eq. 2 and the bottleneck exit heads their parameter counts imply.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sd import losses
from keras_sd.layers.exits import check_exit_head, make_exit_head
from keras_sd.models.base import SelfDistillationModel, check_backbone

PATHS = ("deepest", "ensemble", "transitive", "dense")
REDUCTIONS = ("mean", "sum")
# Feature hint forms: TPAMI eq. 4 (per-sample squared L2) or the official code's (a trained dense
# adaptation layer on the shallow feature, then the un-squared L2 norm over the whole batch).
FEATURE_HINTS = ("squared_l2", "adapted_l2_batch")
HINT_EXITS = ("all", "all_but_last")
ENSEMBLE = "ensemble"


class _Untracked:
    """Holds helper models that share the backbone's layers, out of Keras' object tracking (so
    nothing is saved twice and `trainable_variables` lists every weight once)."""

    def __init__(self, **items):
        self.__dict__.update(items)


def _is_keras_tensor(value) -> bool:
    return isinstance(value, keras.KerasTensor)


def _producer(tensor):
    return tensor._keras_history.operation


def mutual_feature_loss(features: Sequence[Any]):
    """Deep mutual feature loss of Chottananurak et al. (eq. 3), per sample ``[batch]``.

    ``1/(N-1) * sum_{i<N} [KL(F_i || F_N) + KL(F_N || F_i)]`` between the softmax-normalised
    feature vectors of the ``N`` exits, ``F_N`` the deepest. As in deep mutual learning, each
    direction is the loss of its *second* argument, whose target (the first argument) is
    stop-gradiented: ``KL(sg(F_N) || F_i)`` trains exit ``i`` towards the deepest feature and
    ``KL(sg(F_i) || F_N)`` trains the deepest feature towards exit ``i``. So, unlike the BYOT
    terms, the final exit's feature (the backbone) also learns from the shallow ones; no gradient
    flows into the target side of either direction (the pattern of `losses.symmetric_kl`).

    Reference: Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual
    Learning", eq. 3; Zhang et al., "Deep Mutual Learning", CVPR 2018.

    Args:
        features: ``[F_1, ..., F_N]``, ``N >= 2`` tensors ``[batch, dim]`` (any rank is
            flattened per sample), shallow to deep.
    """
    if len(features) < 2:
        raise ValueError(
            f"`features` must hold at least 2 exits' features (N >= 2), got {len(features)}."
        )
    deepest = features[-1]
    total = None
    for f in features[:-1]:
        pair = losses.feature_kl(deepest, f) + losses.feature_kl(f, deepest)
        total = pair if total is None else total + pair
    return total / float(len(features) - 1)


def log_mean_softmax(logits: Sequence[Any], temperature: float = 1.0):
    """``log(mean_k softmax(z_k / T))`` computed stably with logsumexp; ``[batch, classes]``.

    The result is a valid logits tensor whose softmax is the ensemble's mean probability.
    """
    logp = ops.stack(
        [ops.log_softmax(ops.cast(z, "float32") / temperature, axis=-1) for z in logits], axis=0
    )
    return ops.logsumexp(logp, axis=0) - math.log(len(logits))


@keras.saving.register_keras_serializable(package="keras_sd")
class MultiExitDistiller(SelfDistillationModel):
    """Multi-exit self-distillation (BYOT / TPAMI) on any keras_sd backbone.

    Shallow exits (attention module + separable align net + pooling + dense, see
    `keras_sd.layers.ExitHead`) are attached after backbone stages; the backbone's own head is the
    final exit ``exitK``. With ``c_i`` the logits and ``F_i`` the pooled feature of exit ``i``
    (``F_i`` has the final feature's width), the objective is (TPAMI eqs. 3-5)::

        L = 1/n * sum_i [ (1 - a_i) CE(c_i, y) + a_i T^2 KL(sg(q_ref,i^T) || q_i^T) ]
          + lambda/n * sum_i || F_i - sg(F_ref,i) ||_2^2

    with ``a_i = alpha`` for shallow exits and ``a_K = lambda_K = 0`` (the final exit is trained by
    cross-entropy only), ``n = 1`` for ``reduction="sum"`` (the default: the authors' code and the
    ICCV slides) or ``K`` for ``"mean"`` (TPAMI eqs. 3-4 as written). Logged terms (each already divided by ``n``), weighted into ``loss``:

    * ``ce_loss`` (weight 1): the cross-entropy part *including* the ``(1 - alpha)`` factors;
    * ``kl_loss`` (weight ``alpha``): ``sum_i T^2 KL`` (``T^2`` only if ``kl_scale="t2"``);
    * ``feature_loss`` (weight ``feature_weight``): ``sum_i ||F_i - sg(F_ref,i)||^2``;
    * ``teacher_kl_loss`` (weight ``alpha``, only with a ``teacher``): ``T^2 KL(sg(p_teacher^T) ||
      q_K^T)``; the final exit's cross-entropy is then weighted ``1 - alpha`` (conventional KD on
      the final exit, TPAMI Table 3 "KD + Ours").

    ``alpha`` and ``feature_weight`` live in non-trainable variables (``model.alpha``,
    ``model.feature_weight``) that callbacks (`keras_sd.callbacks.DistillationAnnealing`) set
    without retracing the compiled step; checkpoints keep them.

    Distillation paths (reference of shallow exit ``i``, TPAMI section 3.1 / Table 7):
    ``deepest`` (exit K), ``ensemble`` (mean of the softened probabilities and mean of the features
    of all K exits, exit ``i`` included), ``transitive`` (exit ``i + 1``), ``dense`` (every deeper
    exit, KL and feature terms summed, eq. 6). References are stop-gradiented.

    Metrics: ``exit{i}_accuracy`` / ``exit{i}_top5`` for every exit and ``ensemble_accuracy`` /
    ``ensemble_top5`` for the mean of the exits' softmax probabilities (T = 1; the trackers receive
    the log of that mean as logits, which has the same argmax and ranking). ``exitK`` is the
    primary output: ``model(x)`` and ``predict`` return its logits (the backbone alone runs).

    Per-stage access for dynamic early exit: `backbone_segments`, `exit_heads` and `stage_models`.

    Options of Chottananurak et al. (PS-KD + BYOT + deep mutual feature learning, every
    combination):

    * ``pskd_alpha``: PS-KD. In training, every exit's cross-entropy target ``y`` becomes
      ``(1 - alpha_t) y + alpha_t P_prev(x)``, with ``P_prev(x)`` the final exit's softmax for that
      sample from the previous epoch (train mode, T = 1), kept in a per-sample prediction bank
      (`keras_sd.pskd.ProgressiveSelfKD`, ``model.pskd``) read before and written after each step.
      ``alpha_t`` is scheduled by `keras_sd.pskd.PSKDAlphaScheduler` (``fit`` adds it). Inputs must
      carry the sample index (``{"image", "index"}``). Evaluation uses one-hot targets.
    * ``mutual_feature_weight > 0``: adds the term ``mutual_feature_loss`` (see
      `mutual_feature_loss`; ``1/(N-1)`` whatever ``reduction``), weighted by the non-trainable
      variable ``model.mutual_feature_weight``. With 0 (default) the term and variable do not exist.
    * ``exit_losses=False``: no loss on the shallow exits' outputs (no shallow cross-entropy, KL or
      feature hint; ``kl_loss`` / ``feature_loss`` are not computed): ``ce_loss`` is the final
      exit's cross-entropy alone (not divided by K). The shallow exits then serve only as feature
      extractors for the mutual feature loss (Table 1 rows "DMFL" and "PS-KD + DMFL"); their
      classifier layers get no gradient and their accuracies are meaningless.
    * ``final_ce_weight``: the weight of the final exit's cross-entropy (1 above, TPAMI / BYOT).
      Chottananurak et al. write ``L = L_CE + L_Self-KD`` with ``L_CE`` the final output's
      cross-entropy and ``L_Self-KD = sum_{i=1}^{N} [(1 - alpha) CE(P_i, y_soft) + alpha KL(P_i,
      P_N) + lambda ||F_i - F_N||^2]`` over all ``N`` classifiers, the final one included (its KL
      and hint terms are zero, their reference being itself): the final exit's cross-entropy
      weighs ``1 + (1 - alpha)``, 1.9 with their alpha = 0.1. It is a fixed number (it does not
      follow ``model.alpha``); with a ``teacher`` it is multiplied by ``1 - alpha``; with
      ``reduction="mean"`` it is divided by K like the other exits.
    * ``exit_head="bottleneck"``: `keras_sd.layers.BottleneckExitHead` exits (1x1 conv, strided
      patch conv, 1x1 conv, pooling, dense) instead of the TPAMI attention exits; the head of the
      unofficial BYOT code whose parameter counts Chottananurak et al. report (``attention`` is
      then unused).

    Args:
        backbone: a keras_sd backbone (functional, ``{"stages", "features", "logits"}``).
        exits: where the shallow exits attach: ``"stages"`` (after every stage but the last, whose
            exit is the backbone's head), or a list, shallow to deep, of stage indices (0-based
            into ``out["stages"]``, the last stage excluded), layer names of the backbone, or
            tensors of the functional backbone (stored as stage indices / layer names).
        alpha: imitation weight in ``[0, 1]`` (TPAMI recommends 0.6; official code 0.3).
        feature_weight: ``lambda`` of the feature hint, >= 0 (TPAMI 0.04; the official code 0.03
            with its own hint form, ``feature_hint="adapted_l2_batch"``).
        temperature: softening temperature ``T > 0`` (3 in the official code).
        path: ``"deepest"`` | ``"ensemble"`` | ``"transitive"`` | ``"dense"``.
        reduction: ``"sum"`` (default: the exits' losses are summed, as in the authors' released
            code, the ICCV slides and every other implementation, with weight decay on the
            undivided loss) or ``"mean"`` (divide the sums over exits by K, TPAMI eqs. 3-4 as
            written). With SGD and coupled weight decay, ``"mean"`` equals ``"sum"`` run at
            learning rate / K and weight decay x K, a setting no released code ran; it cost the
            final exit 5 points in our short CIFAR-10 study (docs/methods/multi_exit.md).
        kl_scale: ``"none"`` (default: no ``T^2`` factor, as the authors' code; the TPAMI paper
            is silent) or ``"t2"`` (each KL times ``T^2``, Hinton et al.).
        attention: attention modules in the shallow exits (False: TPAMI Table 8 "No Attention").
        teacher: optional frozen `keras.Model` returning logits (or a dict with ``"logits"``);
            adds conventional KD on the final exit.
        weight_decay: coupled L2 coefficient (PyTorch SGD style), >= 0.
        pskd_alpha: PS-KD's ``alpha_T`` in [0, 1] (0.8 in Chottananurak et al.); None turns
            PS-KD off.
        num_train_examples: training-set size (prediction-bank rows); required with
            ``pskd_alpha``.
        bank_dtype: ``"float32"`` or ``"float16"`` storage of the prediction bank.
        mutual_feature_weight: weight of the deep mutual feature loss, >= 0 (1 in
            Chottananurak et al.; 0 turns it off).
        exit_losses: True (BYOT terms on the shallow exits) or False (only the final exit's
            cross-entropy, plus the mutual feature loss and teacher term when on).
        exit_head: ``"attention"`` (TPAMI's exits, `keras_sd.layers.ExitHead`) or
            ``"bottleneck"`` (`keras_sd.layers.BottleneckExitHead`).
        final_ce_weight: weight of the final exit's cross-entropy, >= 0: 1.0 (TPAMI / BYOT) or
            ``1 + (1 - alpha)`` (Chottananurak et al.'s ``L_CE + L_Self-KD``, 1.9).

        feature_hint: form of the feature hint. ``"squared_l2"`` (TPAMI eq. 4): per sample
            ``||F_i - sg(F_ref)||_2^2``, averaged over the batch. ``"adapted_l2_batch"`` (the
            official code): ``||A_i(F_i) - sg(F_ref)||_2`` with ``A_i`` a trainable dense layer
            with bias (``model.feature_adapters``, under weight decay) and the *un-squared* norm
            taken over the whole ``[batch, dim]`` difference (`losses.batch_feature_distance`),
            one scalar per batch, computed per replica under ``tf.distribute``. The adapters are
            used only by this loss: not by ``call_exits``, ``stage_models`` or early exit, and
            not in ``export_backbone``.
        hint_exits: which shallow exits get a feature hint: ``"all"`` (TPAMI), ``"all_but_last"``
            (every shallow exit except exit ``K - 1``, as the official code does), or a list of
            1-based exit numbers in ``1..K-1``. The others keep their cross-entropy and KL.

    Reference (PS-KD, DMFL, final_ce_weight, bottleneck exits): Chottananurak et al.,
    "Progressive Self-Knowledge Distillation with Mutual Learning", eqs. 2-3 and Table 1.
    """

    def __init__(
        self,
        backbone: keras.Model,
        *,
        exits: str | Sequence[int | str | Any] = "stages",
        alpha: float = 0.6,
        feature_weight: float = 0.04,
        temperature: float = 3.0,
        path: str = "deepest",
        reduction: str = "sum",
        kl_scale: str = "none",
        attention: bool = True,
        teacher: keras.Model | None = None,
        weight_decay: float = 0.0,
        pskd_alpha: float | None = None,
        num_train_examples: int | None = None,
        bank_dtype: str = "float32",
        mutual_feature_weight: float = 0.0,
        exit_losses: bool = True,
        exit_head: str = "attention",
        final_ce_weight: float = 1.0,
        feature_hint: str = "squared_l2",
        hint_exits: str | Sequence[int] = "all",
        **kwargs,
    ):
        from keras_sd import pskd  # local import, as in Baseline

        check_backbone(backbone)
        alpha = _check_alpha(alpha)
        pskd_alpha = None if pskd_alpha is None else pskd.check_alpha(pskd_alpha)
        bank_dtype = pskd.check_bank_dtype(bank_dtype)
        if pskd_alpha is not None:
            pskd.check_num_examples(num_train_examples)
        mutual_feature_weight = losses.check_weight(mutual_feature_weight, "mutual_feature_weight")
        if not isinstance(exit_losses, bool):
            raise ValueError(f"`exit_losses` must be True or False, got {exit_losses!r}.")
        feature_weight = losses.check_weight(feature_weight, "feature_weight")
        exit_head = check_exit_head(exit_head)
        final_ce_weight = losses.check_weight(final_ce_weight, "final_ce_weight")
        temperature = losses.check_temperature(temperature)
        if path not in PATHS:
            raise ValueError(f"`path` must be one of {PATHS}, got {path!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}.")
        losses.check_kl_scale(kl_scale)
        if not isinstance(attention, bool):
            raise ValueError(f"`attention` must be True or False, got {attention!r}.")
        if teacher is not None and not isinstance(teacher, keras.Model):
            raise ValueError(
                f"`teacher` must be a keras.Model returning logits, or None; got "
                f"{type(teacher).__name__}."
            )
        if teacher is not None:
            try:
                out = teacher.output
            except (AttributeError, ValueError):  # a subclassed teacher: checked when called
                out = None
            if isinstance(out, dict):
                out = out.get("logits")
            width = getattr(out, "shape", (None,))[-1]
            classes = int(backbone.output["logits"].shape[-1])
            if width is not None and int(width) != classes:
                raise ValueError(
                    f"`teacher` must predict the backbone's {classes} classes, but its logits "
                    f"have {int(width)}."
                )
        exits_config, taps = _resolve_exits(backbone, exits)
        num_exits = len(taps) + 1
        if feature_hint not in FEATURE_HINTS:
            raise ValueError(
                f"`feature_hint` must be one of {FEATURE_HINTS}, got {feature_hint!r}."
            )
        hinted = _resolve_hint_exits(hint_exits, num_exits)
        names = [f"exit{i}" for i in range(1, num_exits + 1)]
        term_names = ["ce_loss", "kl_loss", "feature_loss"] if exit_losses else ["ce_loss"]
        if teacher is not None:
            term_names.append("teacher_kl_loss")
        if mutual_feature_weight > 0:
            term_names.append("mutual_feature_loss")
        super().__init__(
            backbone,
            term_names=term_names,
            # The first output is the primary one (compiled metrics): the final exit.
            output_names=[names[-1], *names[:-1], ENSEMBLE],
            weight_decay=weight_decay,
            **kwargs,
        )
        self.exits = exits_config
        self.alpha_value = alpha
        self.feature_weight_value = feature_weight
        self.temperature = temperature
        self.distillation_path = path
        self.reduction = reduction
        self.kl_scale = kl_scale
        self.attention = attention
        self.exit_names = tuple(names)
        out = backbone.output
        features = out["features"]
        if len(features.shape) != 2:
            raise ValueError(
                f"`backbone` features must be 2-D [batch, dim] (pooled), got shape "
                f"{tuple(features.shape)}."
            )
        self.feature_dim = int(features.shape[-1])
        self._graph = _Untracked(
            tap=keras.Model(
                backbone.inputs[0],
                {"taps": list(taps), "features": features, "logits": out["logits"]},
                name=f"{backbone.name}_taps",
            ),
            taps=list(taps),
            segments=None,
            stage_models=None,
        )
        self.exit_head = exit_head
        self.final_ce_weight = final_ce_weight
        self.exit_heads = []
        for i, tap in enumerate(taps):
            head = make_exit_head(
                exit_head,
                self.num_classes,
                self.feature_dim,
                num_blocks=num_exits - (i + 1),  # N_i = K - i (TPAMI section 3.2)
                attention=attention,
                input_shape=tuple(tap.shape),
                final_shape=tuple(backbone.output["stages"][-1].shape),
                name=f"exit{i + 1}_head",
            )
            self.exit_heads.append(head)
        self.alpha = keras.Variable(alpha, dtype="float32", trainable=False, name="alpha")
        self.feature_weight = keras.Variable(
            feature_weight, dtype="float32", trainable=False, name="feature_weight"
        )
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.exit_losses = exit_losses
        self.mutual_feature_weight_value = mutual_feature_weight
        # Only when on, so models without DMFL keep exactly their previous weights list.
        self.mutual_feature_weight = None
        if mutual_feature_weight > 0:
            self.mutual_feature_weight = keras.Variable(
                mutual_feature_weight,
                dtype="float32",
                trainable=False,
                name="mutual_feature_weight",
            )
        self.pskd_alpha = pskd_alpha
        self.num_train_examples = num_train_examples
        self.bank_dtype = bank_dtype
        self.pskd = None
        if pskd_alpha is not None:
            self.pskd = pskd.ProgressiveSelfKD(
                pskd_alpha, num_train_examples, self.num_classes, bank_dtype, name="pskd"
            )
        self.feature_hint = feature_hint
        self.hint_exits = list(hint_exits) if not isinstance(hint_exits, str) else hint_exits
        self.hinted_exits = hinted  # 0-based indices of the shallow exits with a feature hint
        # One trainable dense layer per hinted exit (the official code's nn.Linear, with bias);
        # none for the paper's form, so default models keep exactly their weights list.
        self.feature_adapters = [
            _feature_adapter(self.feature_dim, self.feature_dim, f"exit{i + 1}_adapt")
            for i in (hinted if feature_hint == "adapted_l2_batch" else ())
        ]
        self.built = True  # every sub-layer is built above; lets `.keras` saving skip a warning

    # ------------------------------------------------------------------ structure
    @property
    def num_exits(self) -> int:
        """Number of exits K (shallow exits + the backbone's own head)."""
        return len(self.exit_names)

    def exit_logits_and_features(self, inputs, training: bool = False):
        """Runs the backbone once and every exit: ``([c_1..c_K], [F_1..F_K])``."""
        images, _ = self.split_inputs(inputs)
        out = self._graph.tap(images, training=training)
        logits, features = [], []
        for head, tap in zip(self.exit_heads, out["taps"]):
            res = head(tap, training=training)
            logits.append(res["logits"])
            features.append(res["features"])
        return [*logits, out["logits"]], [*features, out["features"]]

    def call_exits(self, inputs, training: bool = False) -> dict:
        """Logits of every exit, ``{"exit1": ..., "exitK": ..., "ensemble": log mean softmax}``."""
        logits, _ = self.exit_logits_and_features(inputs, training=training)
        result = dict(zip(self.exit_names, logits))
        result[ENSEMBLE] = log_mean_softmax(logits)
        return result

    def predict_exits(self, x, batch_size: int = 256) -> dict[str, np.ndarray]:
        """NumPy logits of every exit and the ensemble (see `call_exits`) for an array ``x``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
        n = len(x)
        if n == 0:
            raise ValueError("`x` is empty; predict_exits needs at least one sample.")
        parts = [
            {k: np.asarray(v) for k, v in self.call_exits(x[s : s + batch_size]).items()}
            for s in range(0, n, batch_size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def backbone_segments(self) -> list[keras.Model]:
        """The backbone cut at the exit points: K functional models sharing its weights.

        ``segments[0]`` maps images to the feature map at exit 1, ``segments[i]`` maps the map at
        exit ``i`` to the map at exit ``i + 1``, and ``segments[K - 1]`` maps the map at exit
        ``K - 1`` to ``{"features", "logits"}`` of the backbone. Chaining them equals one backbone
        pass, so early-exit inference can run the deeper segments on the undecided samples only.

        Raises:
            ValueError: when the backbone cannot be cut at an exit point (a connection skips
                over it, e.g. an exit inside a residual block).
        """
        if self._graph.segments is None:
            taps = self._graph.taps
            out = self.backbone.output
            ends = [*taps, {"features": out["features"], "logits": out["logits"]}]
            starts = [self.backbone.inputs[0], *taps]
            segments = []
            for i, (start, end) in enumerate(zip(starts, ends)):
                try:
                    segments.append(keras.Model(start, end, name=f"segment{i + 1}"))
                except (ValueError, KeyError) as err:
                    raise ValueError(
                        f"`exits`: the backbone cannot be cut into segments at exit {i + 1} "
                        f"({self.exits!r}); some layer after it reads an earlier tensor ({err})."
                    ) from None
            self._graph.segments = segments
        return list(self._graph.segments)

    def stage_models(self) -> list[keras.Model]:
        """K functional models, one per exit, for dynamic (early-exit) inference.

        ``stage_models()[i]`` (for ``i < K - 1``) maps the feature map at exit ``i`` (the images
        for ``i = 0``) to ``{"stage": map at exit i + 1, "logits": c_{i+1}, "features":
        F_{i+1}}``: the next backbone segment followed by that exit's head. The last maps the map
        at exit ``K - 1`` to ``{"logits": c_K, "features": F_K}``. They share this model's weights;
        run them in inference mode (``training=False``).
        """
        if self._graph.stage_models is None:
            models = []
            for i, segment in enumerate(self.backbone_segments()):
                inp = keras.Input(tuple(segment.inputs[0].shape[1:]), name=f"stage{i + 1}_in")
                h = segment(inp)
                if i < len(self.exit_heads):
                    res = self.exit_heads[i](h)
                    outputs = {"stage": h, "logits": res["logits"], "features": res["features"]}
                else:
                    outputs = {"logits": h["logits"], "features": h["features"]}
                models.append(keras.Model(inp, outputs, name=f"stage{i + 1}"))
            self._graph.stage_models = models
        return list(self._graph.stage_models)

    def export_backbone(self) -> keras.Model:
        """A plain Keras model ``images -> final-exit logits`` without any exit.

        A copy (its own weights, equal to the current ones) with no extra parameters over the
        backbone; its predictions equal the final exit's.
        """
        shared = keras.Model(self.backbone.inputs[0], self.backbone.output["logits"])
        plain = keras.Model.from_config(shared.get_config())
        plain.set_weights(shared.get_weights())
        return plain

    # ------------------------------------------------------------------ loss
    def _references(self, i: int, logits: list, features: list, ensemble=None):
        """``[(ref_logits, ref_feature), ...]`` of shallow exit ``i`` (0-based) for the path.

        Reference logits are such that ``softmax(ref / T)`` is the reference distribution.
        """
        last = len(logits) - 1
        if self.distillation_path == "deepest":
            return [(logits[last], features[last])]
        if self.distillation_path == "transitive":
            return [(logits[i + 1], features[i + 1])]
        if self.distillation_path == "dense":
            return [(logits[j], features[j]) for j in range(i + 1, last + 1)]
        return [ensemble]

    def _ensemble_reference(self, logits, features):
        t = self.temperature
        # T * log(mean_k softmax(z_k / T)): softened by T again inside the KL, it gives back the
        # mean of the softened probabilities.
        ref_logits = t * log_mean_softmax(logits, t)
        ref_features = ops.mean(ops.stack([ops.cast(f, "float32") for f in features]), axis=0)
        return ref_logits, ref_features

    def compute_loss_terms(self, images, targets, training, index=None):
        if training and self.pskd is not None:
            # PS-KD: the same progressive soft target for every exit (Chottananurak et al. eq. 2).
            targets = self.pskd.soft_targets(targets, index)
        logits, features = self.exit_logits_and_features(images, training=training)
        k = len(logits)
        # "mean" averages the losses of the K exits; without exit losses only one exit has any.
        norm = float(k) if (self.reduction == "mean" and self.exit_losses) else 1.0
        alpha = ops.cast(self.alpha, "float32")
        # `final_ce_weight`: 1 (TPAMI), 1 + (1 - alpha) for Chottananurak et al.'s eq. 2 + L_CE.
        final_ce_weight = self.final_ce_weight * (1.0 if self.teacher is None else 1.0 - alpha)
        ce_total = final_ce_weight * losses.soft_target_cross_entropy(targets, logits[-1])
        if self.exit_losses:
            kl_total = ops.zeros_like(ce_total)
            # Per sample [batch] for the paper's hint, one batch scalar for the adapted form.
            batch_hint = self.feature_hint == "adapted_l2_batch"
            feature_total = ops.zeros((), "float32") if batch_hint else ops.zeros_like(ce_total)
            ensemble = None
            if self.distillation_path == "ensemble":  # one reference shared by every shallow exit
                ensemble = self._ensemble_reference(logits, features)
            for i in range(k - 1):
                ce_total = ce_total + (1.0 - alpha) * losses.soft_target_cross_entropy(
                    targets, logits[i]
                )
                for ref_logits, ref_features in self._references(i, logits, features, ensemble):
                    kl_total = kl_total + losses.softened_kl(
                        ref_logits, logits[i], self.temperature, self.kl_scale
                    )
                    if i in self.hinted_exits:
                        feature_total = feature_total + self._feature_hint(
                            i, ref_features, features[i]
                        )
        terms = {"ce_loss": ce_total / norm}
        if self.exit_losses:
            terms["kl_loss"] = kl_total / norm
            terms["feature_loss"] = feature_total / norm
        if self.teacher is not None:
            teacher_out = self.teacher(images, training=False)
            if isinstance(teacher_out, dict):
                teacher_out = teacher_out["logits"]
            terms["teacher_kl_loss"] = (
                losses.softened_kl(teacher_out, logits[-1], self.temperature, self.kl_scale) / norm
            )
        if self.mutual_feature_weight is not None:
            terms["mutual_feature_loss"] = mutual_feature_loss(features)
        outputs = dict(zip(self.exit_names, logits))
        outputs[ENSEMBLE] = log_mean_softmax(logits)
        return outputs, terms

    def _feature_hint(self, i: int, ref_features, features):
        """Feature hint of shallow exit ``i`` (0-based) towards one reference feature."""
        if self.feature_hint == "squared_l2":
            return losses.feature_l2(ref_features, features)  # TPAMI eq. 4, per sample
        adapter = self.feature_adapters[self.hinted_exits.index(i)]
        return losses.batch_feature_distance(ref_features, adapter(features))

    def term_weight(self, name: str):
        if name in ("kl_loss", "teacher_kl_loss"):
            return self.alpha
        if name == "feature_loss":
            return self.feature_weight
        if name == "mutual_feature_loss":
            return self.mutual_feature_weight
        return 1.0

    def after_train_step(self, images, targets, outputs, index) -> None:
        if self.pskd is not None:
            # The bank holds the model's own prediction: the final exit's (train-mode) softmax.
            self.pskd.update(index, outputs[self.exit_names[-1]])

    def fit(self, *args, **kwargs):
        if self.pskd is None:
            return super().fit(*args, **kwargs)
        from keras_sd import pskd

        return pskd.fit_with_pskd(self, super().fit, *args, **kwargs)

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        return {
            **super().get_config(),
            "exits": copy.deepcopy(self.exits),
            "alpha": self.alpha_value,
            "feature_weight": self.feature_weight_value,
            "temperature": self.temperature,
            "path": self.distillation_path,
            "reduction": self.reduction,
            "kl_scale": self.kl_scale,
            "attention": self.attention,
            "teacher": (
                None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher)
            ),
            "pskd_alpha": self.pskd_alpha,
            "num_train_examples": self.num_train_examples,
            "bank_dtype": self.bank_dtype,
            "mutual_feature_weight": self.mutual_feature_weight_value,
            "exit_losses": self.exit_losses,
            "exit_head": self.exit_head,
            "final_ce_weight": self.final_ce_weight,
            "feature_hint": self.feature_hint,
            "hint_exits": copy.deepcopy(self.hint_exits),
        }

    @classmethod
    def from_config(cls, config):
        # Not via super().from_config: its deepcopy would copy the live teacher model.
        config = copy.deepcopy(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)


def _check_alpha(alpha) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"`alpha` must be a number in [0, 1], got {alpha!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}.")
    return value


def _resolve_hint_exits(hint_exits, num_exits: int) -> tuple[int, ...]:
    """0-based indices of the shallow exits that get a feature hint, validated.

    ``"all"``: every shallow exit (TPAMI eq. 4); ``"all_but_last"``: every shallow exit except the
    deepest one, exit ``K - 1`` (what the official code does); or a list of 1-based exit numbers
    in ``1..K-1`` (``exit1`` is the shallowest).
    """
    shallow = num_exits - 1
    if isinstance(hint_exits, str):
        if hint_exits not in HINT_EXITS:
            raise ValueError(
                f"`hint_exits` must be one of {HINT_EXITS} or a list of exit numbers in "
                f"1..{shallow}, got {hint_exits!r}."
            )
        return tuple(range(shallow if hint_exits == "all" else shallow - 1))
    if not isinstance(hint_exits, Sequence):
        raise ValueError(
            f"`hint_exits` must be one of {HINT_EXITS} or a list of exit numbers in 1..{shallow}, "
            f"got {hint_exits!r}."
        )
    numbers = []
    for n in hint_exits:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= shallow:
            raise ValueError(
                f"`hint_exits` items must be shallow exit numbers in 1..{shallow} (1-based; exit "
                f"{num_exits} is the final exit, the reference), got {n!r} in {hint_exits!r}."
            )
        if int(n) in numbers:
            raise ValueError(f"`hint_exits` has exit {int(n)} twice: {hint_exits!r}.")
        numbers.append(int(n))
    return tuple(sorted(n - 1 for n in numbers))


def _feature_adapter(in_dim: int, out_dim: int, name: str) -> keras.layers.Dense:
    """A built dense adaptation layer ``in_dim -> out_dim`` with bias, initialised like PyTorch's
    ``nn.Linear`` (weights and bias uniform in ``+-1/sqrt(in_dim)``), as in the official code."""
    bound = 1.0 / math.sqrt(in_dim)
    layer = keras.layers.Dense(
        out_dim,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name=name,
    )
    layer.build((None, in_dim))
    return layer


def _layer_position(backbone: keras.Model) -> dict[int, int]:
    return {id(layer): i for i, layer in enumerate(backbone.layers)}


def _resolve_exits(backbone: keras.Model, exits) -> tuple[str | list, list]:
    """``(config form of exits, [tensor at each shallow exit])``, validated, shallow to deep."""
    stages = list(backbone.output["stages"])
    if isinstance(exits, str):
        if exits != "stages":
            raise ValueError(
                f"`exits` must be 'stages' or a list of stage indices / layer names / tensors, "
                f"got {exits!r}."
            )
        if len(stages) < 2:
            raise ValueError(
                f"`backbone` must expose at least 2 stages for exits='stages' (the last stage's "
                f"exit is the backbone's head), got {len(stages)}."
            )
        return "stages", stages[:-1]
    if not isinstance(exits, Sequence) or len(exits) == 0:
        raise ValueError(
            f"`exits` must be 'stages' or a non-empty list of stage indices / layer names / "
            f"tensors, got {exits!r}."
        )
    position = _layer_position(backbone)
    last_stage_pos = position.get(id(_producer(stages[-1])), len(backbone.layers))
    config, taps = [], []
    for item in exits:
        if _is_keras_tensor(item):
            match = [j for j, s in enumerate(stages) if s is item]
            item = match[0] if match else _producer(item).name
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            item = int(item)
            if not 0 <= item < len(stages) - 1:
                raise ValueError(
                    f"`exits`: stage index {item} out of range; the backbone has {len(stages)} "
                    f"stages and shallow exits may use indices 0..{len(stages) - 2} (the last "
                    f"stage's exit is the backbone's own head)."
                )
            tensor = stages[item]
        elif isinstance(item, str):
            try:
                layer = backbone.get_layer(item)
            except ValueError:
                raise ValueError(f"`exits`: the backbone has no layer named {item!r}.") from None
            try:
                tensor = layer.output
            except (AttributeError, ValueError):
                raise ValueError(
                    f"`exits`: layer {item!r} has no single output tensor (shared layer?)."
                ) from None
            if isinstance(tensor, (list, tuple, dict)):
                raise ValueError(f"`exits`: layer {item!r} has several outputs.")
        else:
            raise ValueError(
                f"`exits` items must be stage indices (int), layer names (str) or tensors of the "
                f"backbone, got {item!r}."
            )
        if len(tensor.shape) != 4:
            raise ValueError(
                f"`exits`: exit point {item!r} must be a 4-D feature map, got shape "
                f"{tuple(tensor.shape)}."
            )
        config.append(item)
        taps.append(tensor)
    pos = [position.get(id(_producer(t)), -1) for t in taps]
    if any(b <= a for a, b in zip(pos, pos[1:])) or pos[-1] >= last_stage_pos:
        raise ValueError(
            f"`exits` must be distinct, ordered shallow to deep and before the last stage, got "
            f"{config!r} (layer positions {pos}, last stage at {last_stage_pos})."
        )
    return config, taps
