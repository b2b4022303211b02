"""keras_sd: self-distillation for Keras 3 / TensorFlow.

Methods: two-view self-distillation (DDGSD), multi-exit self-distillation (BYOT / TPAMI),
PS-KD with BYOT and deep mutual feature learning, and Self-Guidance.

``import keras_sd`` imports no TensorFlow, so that ``keras-sd --help``, ``keras-sd recipes`` and
the recipe files (`keras_sd.recipes`, `keras_sd.schedules`, `keras_sd.paper_args`) start at once.
The first use of anything else (``keras_sd.MultiExitDistiller``, ``import keras_sd.train``, ...)
imports all the Keras parts as before, so every serialisable class is registered for
``keras.models.load_model`` whichever part was imported first; if Keras is already imported when
``keras_sd`` is, they are imported at once. To load a saved model in a process that imports
``keras_sd`` before Keras, touch any Keras part first (e.g. ``import keras_sd.models``).
"""

import importlib
import importlib.abc
import sys

__version__ = "0.1.0"

# Modules that import no TensorFlow (nor any of the modules below).
_LIGHT = {
    "cli",
    "recipes",
    "schedules",
    "paper_args",
    "paper_recipes",
    "litert_runtime",
    "validation",
    "atomic",
}
# What `import keras_sd` used to import eagerly; importing it registers every Keras class.
_HEAVY = ("backbones", "callbacks", "data", "layers", "losses", "metrics", "pskd", "models")
_MODELS = (
    "Baseline",
    "MultiExitDistiller",
    "SelfDistillationModel",
    "SelfGuidanceDistiller",
    "TwoViewDistiller",
)
_loaded = False


def _load_heavy() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _HEAVY:
        importlib.import_module(f"{__name__}.{name}")


class _HeavyFirst(importlib.abc.MetaPathFinder):
    """Before the first import of a Keras part of keras_sd, imports all of them (as the package
    root did eagerly), then lets the ordinary finders do the import."""

    def find_spec(self, fullname, path, target=None):
        parts = fullname.split(".")
        if not _loaded and parts[0] == __name__ and len(parts) > 1 and parts[1] not in _LIGHT:
            _load_heavy()
        return None


if not any(type(f).__name__ == "_HeavyFirst" for f in sys.meta_path):  # once, even on reload
    sys.meta_path.insert(0, _HeavyFirst())

# Keras only imports the modules of its own packages when it deserialises, so a saved keras_sd
# model loads only once our classes are registered. When Keras (hence TensorFlow) is already
# imported there is nothing to save by waiting: register everything now, so the usual
# `import keras, keras_sd; keras.models.load_model(path)` works as it did with an eager root.
if "keras" in sys.modules:
    _load_heavy()


def __getattr__(name):
    if name in _MODELS:
        _load_heavy()
        return getattr(importlib.import_module(f"{__name__}.models"), name)
    if name in _HEAVY:
        _load_heavy()
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODELS, *_HEAVY])


__all__ = [*_MODELS, "__version__", *_HEAVY]
