"""Dynamic early-exit inference, MAC counting and threshold search (TPAMI Algorithms 1 and 2).

Example:
    >>> from keras_sd.inference import EarlyExitModel, count_macs, search_thresholds
    >>> result = search_thresholds(multi_exit_model, (x_val, y_val), beta=0.5)
    >>> fast = EarlyExitModel(multi_exit_model, result.thresholds)
    >>> out = fast(images)  # {"prediction", "exit", "logits"}; deeper stages run on fewer samples
"""

from keras_sd.inference.early_exit import (
    EarlyExitModel,
    check_multi_exit,
    check_thresholds,
    freeze_function,
)
from keras_sd.inference.litert import export_litert
from keras_sd.inference.macs import MacReport, count_macs, layer_macs
from keras_sd.inference.search import (
    SWEEP_VALUES,
    ExitProbabilities,
    SearchReportSplit,
    ThresholdSearchResult,
    collect_exit_probabilities,
    decode,
    encode,
    measure_acceleration,
    rescore,
    search_thresholds,
    simulate,
    split_search_report,
    sweep_thresholds,
)
from keras_sd.litert_runtime import LiteRTEarlyExit  # the TensorFlow-free LiteRT runtime

__all__ = [
    "SWEEP_VALUES",
    "EarlyExitModel",
    "ExitProbabilities",
    "LiteRTEarlyExit",
    "MacReport",
    "SearchReportSplit",
    "ThresholdSearchResult",
    "check_multi_exit",
    "check_thresholds",
    "collect_exit_probabilities",
    "count_macs",
    "decode",
    "encode",
    "export_litert",
    "freeze_function",
    "layer_macs",
    "measure_acceleration",
    "rescore",
    "search_thresholds",
    "simulate",
    "split_search_report",
    "sweep_thresholds",
]
