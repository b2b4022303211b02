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

from keras_sd import losses, validation
from keras_sd.layers.exits import check_exit_head, make_exit_head
from keras_sd.layers.tokens import check_token_pooling
from keras_sd.losses import log_mean_softmax, mutual_feature_loss  # noqa: F401 (defined here once)
from keras_sd.models.base import SelfDistillationModel
from keras_sd.models.exit_graph import ExitGraph

PATHS = losses.DISTILLATION_PATHS
REDUCTIONS = ("mean", "sum")
# Feature hint forms: TPAMI eq. 4 (per-sample squared L2) or the official code's (a trained dense
# adaptation layer on the shallow feature, then the un-squared L2 norm over the whole batch).
FEATURE_HINTS = ("squared_l2", "adapted_l2_batch")
HINT_EXITS = ("all", "all_but_last")
ENSEMBLE = "ensemble"


@keras.saving.register_keras_serializable(package="keras_sd")
class MultiExitDistiller(SelfDistillationModel):
    """Multi-exit self-distillation (BYOT / TPAMI) on any keras_sd backbone.

    Shallow exits (`keras_sd.layers.ExitHead`, `BottleneckExitHead`, or `TokenExitHead` on a
    transformer's tokens) read the backbone where its `exit_graph` (an `ExitGraph`) taps it;
    the backbone's own head is the final exit ``exitK``.
    With ``c_i`` the logits and ``F_i`` the pooled feature of exit ``i`` (the final feature's
    width), the objective is (TPAMI eqs. 3-5)::

        L = 1/n * sum_i [ (1 - a_i) CE(c_i, y) + a_i T^2 KL(sg(q_ref,i^T) || q_i^T) ]
          + lambda/n * sum_i || F_i - sg(F_ref,i) ||_2^2

    with ``a_i = alpha`` for shallow exits, ``a_K = lambda_K = 0`` and ``n = 1`` (``"sum"``) or
    ``K`` (``"mean"``). Logged terms, each divided by ``n``: ``ce_loss`` (weight 1, the ``1 -
    alpha`` factors included), ``kl_loss`` (weight ``alpha``), ``feature_loss`` (weight
    ``feature_weight``) and, when on, ``teacher_kl_loss`` (weight ``alpha``) and
    ``mutual_feature_loss`` (`keras_sd.losses.mutual_feature_kl`, weight
    ``mutual_feature_weight``). Each term's weight lives in the non-trainable variable
    ``model.term_weights[term]`` (``kl_loss_weight``, ...) that callbacks set without retracing;
    the shallow exits' ``1 - alpha`` factors read the ``kl_loss`` weight (the final exit's, with a
    teacher, the ``teacher_kl_loss`` weight), so annealing a KL weight to 0 restores full CE. Outputs: ``exit1`` .. ``exitK`` and ``ensemble``
    (log of the mean softmax); ``exitK`` is primary, so ``model(x)`` runs the backbone alone.
    Each option's paper meaning and the PS-KD / DMFL combinations of Chottananurak et al.:
    docs/methods/multi_exit.md and docs/methods/pskd.md.

    Example:
        >>> from keras_sd import backbones
        >>> backbone = backbones.get("resnet20", input_shape=(8, 8, 1), num_classes=10)
        >>> model = MultiExitDistiller(backbone, alpha=0.3)
        >>> sorted(model.call_exits(np.zeros((2, 8, 8, 1), "float32")))
        ['ensemble', 'exit1', 'exit2', 'exit3']

    Args:
        backbone: a keras_sd backbone (functional, ``{"stages", "features", "logits"}``).
        exits: where the shallow exits attach (see `ExitGraph`): ``"stages"`` or a list, shallow
            to deep, of stage indices, layer names or tensors of the backbone.
        alpha: imitation weight in ``[0, 1]`` (TPAMI 0.6; the official code 0.3).
        feature_weight: ``lambda`` of the feature hint, >= 0 (TPAMI 0.04).
        temperature: softening temperature ``T > 0``.
        path: reference of shallow exit ``i``: ``"deepest"`` (exit K), ``"ensemble"`` (all K
            exits), ``"transitive"`` (exit ``i + 1``) or ``"dense"`` (every deeper exit).
        reduction: ``"sum"`` (the authors' code) or ``"mean"`` (TPAMI eqs. 3-4 as written).
        kl_scale: ``"none"`` (the authors' code) or ``"t2"`` (each KL times ``T^2``).
        attention: attention modules in the shallow exits (False: TPAMI Table 8).
        teacher: optional frozen `keras.Model` returning logits (or a dict with ``"logits"``):
            conventional KD on the final exit, whose cross-entropy then weighs ``1 - alpha``.
        weight_decay: coupled L2 coefficient (PyTorch SGD style), >= 0.
        soft_targets: PS-KD (`keras_sd.pskd.ProgressiveSelfKD`, or the shorthand ``pskd_alpha``,
            ``num_train_examples``, ``bank_dtype``; see `SelfDistillationModel`): the same soft
            target on every exit; the bank holds the final exit's softmax.
        mutual_feature_weight: weight of the deep mutual feature loss, >= 0 (0: off).
        exit_losses: False drops every loss on the shallow exits' outputs (``ce_loss`` is the
            final exit's alone); they then only feed the mutual feature loss.
        exit_head: ``"attention"`` (TPAMI) or ``"bottleneck"`` (Chottananurak et al.).
        final_ce_weight: fixed weight of the final exit's cross-entropy, >= 0 (1.0 TPAMI; 1.9
            for Chottananurak et al.'s ``L_CE + L_Self-KD``).
        feature_hint: ``"squared_l2"`` (TPAMI eq. 4, per sample) or ``"adapted_l2_batch"`` (the
            authors' code: a trainable dense adapter per hinted exit, ``model.feature_adapters``,
            used by this loss only, and the un-squared norm over the whole batch).
        hint_exits: shallow exits with a feature hint: ``"all"``, ``"all_but_last"`` (the
            authors' code) or a list of 1-based exit numbers in ``1..K-1``.
        token_pooling: pooling of the exits that read a transformer's token sequence
            (`keras_sd.layers.tokens.TokenExitHead`, chosen automatically for a 3-D exit point,
            e.g. a ViT from `keras_sd.backbones.from_keras_hub`): ``"mean"``, ``"class_token"``
            or ``"attention"``. ``exit_head`` and ``attention`` apply to 4-D maps only. The
            feature hint and the mutual feature loss compare the pooled token features.
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
        mutual_feature_weight: float = 0.0,
        exit_losses: bool = True,
        exit_head: str = "attention",
        final_ce_weight: float = 1.0,
        feature_hint: str = "squared_l2",
        hint_exits: str | Sequence[int] = "all",
        token_pooling: str = "mean",
        **kwargs,
    ):
        graph = ExitGraph(backbone, exits)  # checks the backbone contract and the exit points
        alpha = validation.unit_interval(alpha, "alpha")
        mutual_feature_weight = validation.non_negative(
            mutual_feature_weight, "mutual_feature_weight"
        )
        feature_weight = validation.non_negative(feature_weight, "feature_weight")
        final_ce_weight = validation.non_negative(final_ce_weight, "final_ce_weight")
        temperature = validation.positive(temperature, "temperature")
        losses.check_kl_scale(kl_scale)
        exit_head = check_exit_head(exit_head)
        token_pooling = check_token_pooling(token_pooling)
        _check_options(path, reduction, feature_hint, attention, exit_losses)
        _check_teacher(teacher, backbone)
        hinted = _resolve_hint_exits(hint_exits, graph.num_exits)
        names = [f"exit{i}" for i in range(1, graph.num_exits + 1)]
        loss_weights = {"ce_loss": 1.0}
        if exit_losses:
            loss_weights.update(kl_loss=alpha, feature_loss=feature_weight)
        if teacher is not None:
            loss_weights["teacher_kl_loss"] = alpha
        if mutual_feature_weight > 0:
            loss_weights["mutual_feature_loss"] = mutual_feature_weight
        super().__init__(
            backbone,
            loss_weights=loss_weights,
            # The first output is the primary one (compiled metrics): the final exit.
            tracked_outputs=[names[-1], *names[:-1], ENSEMBLE],
            # Every exit's and the ensemble's calibration (ReliabilityDiagram draws each).
            calibrated_outputs=[*names, ENSEMBLE],
            weight_decay=weight_decay,
            **kwargs,
        )
        # A plain object, not a Layer: Keras does not track it, so the backbone weights its
        # models share are saved once.
        self.exit_graph = graph
        self.exits = graph.exits
        self.alpha = alpha
        self.feature_weight = feature_weight
        self.temperature = temperature
        # Not `self.path`: that is Keras' read-only layer path.
        self.distillation_path = path
        self.reduction = reduction
        self.kl_scale = kl_scale
        self.attention = attention
        self.exit_names = tuple(names)
        self.feature_dim = graph.feature_dim
        self.exit_head = exit_head
        self.final_ce_weight = final_ce_weight
        self.token_pooling = token_pooling
        self.exit_heads = _exit_heads(graph, exit_head, self.num_classes, attention, token_pooling)
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.exit_losses = exit_losses
        self.mutual_feature_weight = mutual_feature_weight
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

    # ------------------------------------------------------------------ exits
    @property
    def num_exits(self) -> int:
        """Number of exits K (shallow exits + the backbone's own head)."""
        return len(self.exit_names)

    def exit_logits_and_features(self, inputs, training: bool = False):
        """Runs the backbone once and every exit: ``([c_1..c_K], [F_1..F_K])``."""
        images, _ = self.split_inputs(inputs)
        out = self.exit_graph(images, training=training)
        logits, features = [], []
        for head, feature_map in zip(self.exit_heads, out["feature_maps"]):
            res = head(feature_map, training=training)
            logits.append(res["logits"])
            features.append(res["features"])
        return [*logits, out["logits"]], [*features, out["features"]]

    def call_exits(self, inputs, training: bool = False) -> dict:
        """Logits of every exit, ``{"exit1": ..., "exitK": ..., "ensemble": log mean softmax}``."""
        logits, _ = self.exit_logits_and_features(inputs, training=training)
        result = dict(zip(self.exit_names, logits))
        result[ENSEMBLE] = losses.log_mean_softmax(logits)
        return result

    def predict_exits(self, x, batch_size: int = 256) -> dict[str, np.ndarray]:
        """NumPy logits of every exit and the ensemble (see `call_exits`) for an array ``x``."""
        batch_size = validation.positive_int(batch_size, "batch_size")
        n = len(x)
        if n == 0:
            raise ValueError("`x` is empty; predict_exits needs at least one sample.")
        parts = [
            {k: np.asarray(v) for k, v in self.call_exits(x[s : s + batch_size]).items()}
            for s in range(0, n, batch_size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def backbone_segments(self) -> list[keras.Model]:
        """`ExitGraph.segments` of `exit_graph`: the backbone cut at the exit points."""
        return self.exit_graph.segments()

    def stage_models(self) -> list[keras.Model]:
        """`ExitGraph.stage_models` with this model's exit heads: one model per exit."""
        return self.exit_graph.stage_models(self.exit_heads)

    def export_backbone(self) -> keras.Model:
        """`ExitGraph.export_backbone`: a plain copy ``images -> final-exit logits``."""
        return self.exit_graph.export_backbone()

    # ------------------------------------------------------------------ loss
    def compute_loss_terms(self, images, targets, training, index=None):
        logits, features = self.exit_logits_and_features(images, training=training)
        k = len(logits)
        # "mean" averages the losses of the K exits; without exit losses only one exit has any.
        norm = float(k) if (self.reduction == "mean" and self.exit_losses) else 1.0
        # `final_ce_weight`: 1 (TPAMI), 1 + (1 - alpha) for Chottananurak et al.'s eq. 2 + L_CE;
        # times 1 - alpha with a teacher, alpha being the (scheduled) weight of its KL.
        final_ce_weight = self.final_ce_weight
        if self.teacher is not None:
            final_ce_weight = final_ce_weight * (1.0 - self.term_weight("teacher_kl_loss"))
        ce_total = final_ce_weight * losses.soft_target_cross_entropy(targets, logits[-1])
        if self.exit_losses:
            kl_total = ops.zeros_like(ce_total)
            # Per sample [batch] for the paper's hint, one batch scalar for the adapted form.
            batch_hint = self.feature_hint == "adapted_l2_batch"
            feature_total = ops.zeros((), "float32") if batch_hint else ops.zeros_like(ce_total)
            # alpha of TPAMI eq. 3 is the (scheduled) weight of the KL term: annealing it to 0
            # also gives the shallow exits' cross-entropy its full weight.
            alpha = self.term_weight("kl_loss")
            path, t = self.distillation_path, self.temperature
            # The ensemble reference is the same for every shallow exit: computed once.
            shared = None
            if path == "ensemble":
                shared = losses.distillation_references(path, 0, logits, features, t)
            for i in range(k - 1):
                ce_total = ce_total + (1.0 - alpha) * losses.soft_target_cross_entropy(
                    targets, logits[i]
                )
                refs = shared or losses.distillation_references(path, i, logits, features, t)
                for ref_logits, ref_features in refs:
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
        if "mutual_feature_loss" in self.term_weights:
            terms["mutual_feature_loss"] = losses.mutual_feature_kl(features)
        outputs = dict(zip(self.exit_names, logits))
        outputs[ENSEMBLE] = losses.log_mean_softmax(logits)
        return outputs, terms

    def _feature_hint(self, i: int, ref_features, features):
        """Feature hint of shallow exit ``i`` (0-based) towards one reference feature."""
        if self.feature_hint == "squared_l2":
            return losses.feature_l2(ref_features, features)  # TPAMI eq. 4, per sample
        adapter = self.feature_adapters[self.hinted_exits.index(i)]
        return losses.batch_feature_distance(ref_features, adapter(features))

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        return {
            **super().get_config(),
            "exits": copy.deepcopy(self.exits),
            "alpha": self.alpha,
            "feature_weight": self.feature_weight,
            "temperature": self.temperature,
            "path": self.distillation_path,
            "reduction": self.reduction,
            "kl_scale": self.kl_scale,
            "attention": self.attention,
            "teacher": (
                None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher)
            ),
            "mutual_feature_weight": self.mutual_feature_weight,
            "exit_losses": self.exit_losses,
            "exit_head": self.exit_head,
            "final_ce_weight": self.final_ce_weight,
            "feature_hint": self.feature_hint,
            "hint_exits": copy.deepcopy(self.hint_exits),
            "token_pooling": self.token_pooling,
        }

    @classmethod
    def from_config(cls, config):
        # Not via super().from_config: its deepcopy would copy the live teacher model.
        config = copy.deepcopy(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        for key in ("teacher", "soft_targets"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _exit_heads(
    graph: ExitGraph, kind: str, num_classes: int, attention: bool, token_pooling: str = "mean"
) -> list:
    """A built exit head for each shallow exit point of ``graph``, shallow first: of ``kind`` on
    a 4-D map, a `TokenExitHead` pooling by ``token_pooling`` on a 3-D token sequence."""
    final_shape = tuple(graph.backbone.output["stages"][-1].shape)
    return [
        make_exit_head(
            kind,
            num_classes,
            graph.feature_dim,
            num_blocks=graph.num_exits - (i + 1),  # N_i = K - i (TPAMI section 3.2)
            attention=attention,
            input_shape=tuple(point.shape),
            final_shape=final_shape,
            name=f"exit{i + 1}_head",
            token_pooling=token_pooling,
        )
        for i, point in enumerate(graph.exit_points)
    ]


def _check_options(path, reduction, feature_hint, attention, exit_losses) -> None:
    """Raises a ValueError for an unknown choice or a flag that is not a bool."""
    validation.one_of(path, "path", PATHS)
    validation.one_of(reduction, "reduction", REDUCTIONS)
    validation.one_of(feature_hint, "feature_hint", FEATURE_HINTS)
    validation.boolean(attention, "attention")
    validation.boolean(exit_losses, "exit_losses")


def _check_teacher(teacher, backbone: keras.Model) -> None:
    """Raises unless ``teacher`` is None or a keras.Model predicting the backbone's classes."""
    if teacher is None:
        return
    if not isinstance(teacher, keras.Model):
        raise ValueError(
            f"`teacher` must be a keras.Model returning logits, or None; got "
            f"{type(teacher).__name__}."
        )
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
