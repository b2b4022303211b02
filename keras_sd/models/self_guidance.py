"""Self-Guidance: a stochastic-depth sub-network (student) distils from the full network (teacher).

Every training batch goes through the same backbone twice: once as a freshly sampled sub-network
(each residual block ``l`` kept with probability ``p_l``, its branch dropped otherwise) and once
as the full network (each branch scaled by ``p_l``). Both passes update the same weights:

    L = CE(z_S, y) + teacher_ce_weight * CE(z_T, y)
      + kd_weight * tau^2 * KL(sg(p_T^tau) || p_S^tau)

Deployment is the full network, one pass (``training=False``), as in Stochastic Depth.

Reference: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via
Knowledge Distillation", WACV 2022 (eqs. 3-5, Algorithm 1); the gates are those of
Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_sd import losses, validation
from keras_sd.layers.stochastic_depth import StochasticDepth, full_network
from keras_sd.models.base import OUTPUT, SelfDistillationModel

DROP_MODES = ("per_sample", "per_batch")
STUDENT = "student"  # name of the sub-network output (the full network is the primary OUTPUT)


def stochastic_depth_gates(model: keras.layers.Layer) -> list[StochasticDepth]:
    """Every `StochasticDepth` layer of ``model``, nested models included, in layer order."""
    found = []
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, StochasticDepth):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(stochastic_depth_gates(layer))
    return found


@keras.saving.register_keras_serializable(package="keras_sd")
class SelfGuidanceDistiller(SelfDistillationModel):
    """Self-Guidance training of a residual backbone with stochastic-depth gates.

    Each training step runs two passes over the same batch, both with BatchNorm in training mode
    (the sub-network first, then the full network, as in the paper's Algorithm 1):

    - student: the backbone with ``training=True``; every `StochasticDepth` gate keeps its branch
      with probability ``p_l`` (per sample or per batch, see ``drop_mode``);
    - teacher: the backbone with ``training=True`` inside `keras_sd.layers.stochastic_depth.
      full_network`, so every gate scales its branch by ``p_l`` (the paper's Eq. 4).

    Loss terms (each logged, with the weighted ``loss``):

    - ``ce_student_loss``: ``CE(z_S, y)`` (weight 1);
    - ``ce_teacher_loss``: ``CE(z_T, y)`` (weight ``teacher_ce_weight``, 1 in the paper);
    - ``kl_loss``: ``KL(sg(p_T^tau) || p_S^tau)``, times ``tau^2`` with ``kl_scale="t2"`` (weight
      ``kd_weight``, the paper's lambda).

    Accuracy is tracked for the full network (``accuracy``, ``top5``: what is deployed) and for
    the sampled student (``student_accuracy``, ``student_top5``). Evaluation (`test_step`) and
    prediction run the full network once with ``training=False`` (gates scale by ``p_l``,
    BatchNorm moving statistics). There is no student at evaluation: ``val_student_*`` repeat the
    full network's numbers, ``val_ce_teacher_loss`` is the full network's cross entropy and
    ``val_ce_student_loss`` / ``val_kl_loss`` read 0 (not computed).

    Where the gates come from: the backbone is the one source of truth. Build it with its
    stochastic-depth setting, e.g. ``keras_sd.backbones.get("resnet32", stochastic_depth=0.5,
    drop_mode="per_batch")`` (linear decay of ``p_l`` from 1 to ``final_survival``, Huang et
    al.). ``final_survival`` and ``drop_mode`` here *declare* what the backbone must contain and
    are checked against its gates (the smallest ``p_l`` and every gate's mode); a mismatch raises
    a ValueError instead of silently training another configuration. They are stored in
    `get_config`, and the serialised backbone carries the same gates, so a round trip is exact.

    Paper readings (docs/methods/self_guidance.md, "Fidelity"):

    - The paper writes ``KL(p^S, p^T)`` following ONE; the teacher is the target and receives no
      gradient through the KL (``teacher_gradient=False``, default). ``teacher_gradient=True``
      lets the KL's gradient also flow into the full-network pass.
    - ``kd_weight=0`` is Table 6's "W/O online distillation" (lambda = 0).
    - ``teacher_ce_weight=0`` (with ``teacher_gradient=False``) is Table 6's "W/O backward full
      network": the full network is only a target and no gradient reaches its pass (the teacher
      pass is then stop-gradiented, so it costs no backward computation).

    Args:
        backbone: A keras_sd contract backbone containing `StochasticDepth` gates.
        kd_weight: lambda >= 0, weight of the distillation term (paper: 0.25).
        temperature: tau > 0 of the softened KL (paper: 3).
        final_survival: The last block's survival probability, in (0, 1]; must equal the
            smallest survival probability of the backbone's gates (paper: 0.5).
        drop_mode: ``"per_batch"`` (default: one sub-network drawn per mini-batch, as the
            paper's Fig. 1 "Student: sampled sub-network for each mini-batch" and its Algorithm 1
            say, and as the original Stochastic Depth; dropped branches are not computed) or
            ``"per_sample"`` (each sample drops blocks independently, drop-path style); must
            equal every gate's mode.
        teacher_gradient: Whether the KL term also back-propagates into the teacher pass.
        kl_scale: ``"t2"`` multiplies the KL by tau^2 (the paper's Eq. 5); ``"none"`` leaves it out.
        teacher_ce_weight: Weight >= 0 of the full network's cross entropy (paper: 1; 0 for the
            "W/O backward full network" ablation).
        weight_decay: Coupled L2 coefficient (PyTorch SGD style), >= 0 (paper: 1e-4).
        **kwargs: `keras.Model` arguments (``name``).

    Raises:
        ValueError: for a backbone without gates, gates that disagree with ``final_survival`` or
            ``drop_mode``, or any argument out of range.

    Reference: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via
    Knowledge Distillation", WACV 2022.
    """

    def __init__(
        self,
        backbone: keras.Model,
        *,
        kd_weight: float = 0.25,
        temperature: float = 3.0,
        final_survival: float = 0.5,
        drop_mode: str = "per_batch",
        teacher_gradient: bool = False,
        kl_scale: str = "t2",
        teacher_ce_weight: float = 1.0,
        weight_decay: float = 0.0,
        **kwargs,
    ):
        kd_weight = validation.non_negative(kd_weight, "kd_weight")
        teacher_ce_weight = validation.non_negative(teacher_ce_weight, "teacher_ce_weight")
        temperature = validation.positive(temperature, "temperature")
        final_survival = validation.survival_probability(final_survival, "final_survival")
        validation.one_of(drop_mode, "drop_mode", DROP_MODES)
        validation.boolean(teacher_gradient, "teacher_gradient")
        losses.check_kl_scale(kl_scale)
        super().__init__(
            backbone,
            loss_weights={
                "ce_student_loss": 1.0,
                "ce_teacher_loss": teacher_ce_weight,
                "kl_loss": kd_weight,
            },
            tracked_outputs=(OUTPUT, STUDENT),
            weight_decay=weight_decay,
            **kwargs,
        )
        self._check_gates(backbone, final_survival, drop_mode)
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.final_survival = final_survival
        self.drop_mode = drop_mode
        self.teacher_gradient = teacher_gradient
        self.kl_scale = kl_scale
        self.teacher_ce_weight = teacher_ce_weight

    @staticmethod
    def _check_gates(backbone: keras.Model, final_survival: float, drop_mode: str) -> None:
        gates = stochastic_depth_gates(backbone)
        if not gates:
            raise ValueError(
                f"`backbone` {backbone.name!r} has no StochasticDepth gates, so it has no "
                "sub-networks to sample. Build it with stochastic depth, e.g. "
                f"keras_sd.backbones.get('resnet32', stochastic_depth={final_survival}, "
                f"drop_mode={drop_mode!r})."
            )
        smallest = min(g.survival_probability for g in gates)
        if not math.isclose(smallest, final_survival, rel_tol=0.0, abs_tol=1e-6):
            raise ValueError(
                f"`final_survival`={final_survival} disagrees with the backbone, whose smallest "
                f"gate survival probability is {smallest:g}. The backbone is the source of truth: "
                f"pass final_survival={smallest:g}, or build the backbone with "
                f"stochastic_depth={final_survival} (in a recipe set backbone_args.stochastic_depth "
                "and method_args.final_survival together)."
            )
        modes = sorted({g.mode for g in gates})
        if modes != [drop_mode]:
            raise ValueError(
                f"`drop_mode`={drop_mode!r} disagrees with the backbone's gates, whose modes are "
                f"{modes}. Pass drop_mode={modes[0]!r}, or build the backbone with "
                f"drop_mode={drop_mode!r} (in a recipe set backbone_args.drop_mode and "
                "method_args.drop_mode together)."
            )

    # ------------------------------------------------------------------ method
    def distillation_loss(self, teacher_logits, student_logits):
        """Per-sample ``KL(p_T^tau || p_S^tau)`` (times tau^2 for ``"t2"``); the teacher side is
        stop-gradiented unless ``teacher_gradient``."""
        return losses.softened_kl(
            teacher_logits,
            student_logits,
            self.temperature,
            self.kl_scale,
            stop_target_gradient=not self.teacher_gradient,
        )

    def student_logits(self, images):
        """Logits of a freshly sampled sub-network (training mode; draws new gates)."""
        return self.backbone(images, training=True)["logits"]

    def teacher_logits(self, images):
        """Logits of the full network in training mode (gates scale by ``p_l``; BN batch stats)."""
        with full_network():
            return self.backbone(images, training=True)["logits"]

    def compute_loss_terms(self, images, targets, training: bool, index=None):
        if not training:
            # Deployment: the full network, one pass; there is no student at evaluation.
            logits = self.backbone(images, training=False)["logits"]
            ce = losses.soft_target_cross_entropy(targets, logits)
            return {OUTPUT: logits, STUDENT: logits}, {"ce_teacher_loss": ce}
        z_s = self.student_logits(images)
        z_t = self.teacher_logits(images)
        if self.teacher_ce_weight == 0.0 and not self.teacher_gradient:
            # Nothing back-propagates into the teacher pass; say so, so the tape skips it.
            z_t = ops.stop_gradient(z_t)
        terms = {
            "ce_student_loss": losses.soft_target_cross_entropy(targets, z_s),
            "ce_teacher_loss": losses.soft_target_cross_entropy(targets, z_t),
            "kl_loss": self.distillation_loss(z_t, z_s),
        }
        return {OUTPUT: z_t, STUDENT: z_s}, terms

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kd_weight": self.kd_weight,
                "temperature": self.temperature,
                "final_survival": self.final_survival,
                "drop_mode": self.drop_mode,
                "teacher_gradient": self.teacher_gradient,
                "kl_scale": self.kl_scale,
                "teacher_ce_weight": self.teacher_ce_weight,
            }
        )
        return config
