"""Input pipelines: TFDS sets, image folders, embedded digits; per-sample distortions.

Example:
    >>> from keras_sd import data
    >>> bundle = data.load("digits", batch_size=64)
    >>> bundle.info.num_classes
    10
"""

from keras_sd.data.pipeline import AUGMENTS, DataBundle, DataInfo, distortion, load

__all__ = ["AUGMENTS", "DataBundle", "DataInfo", "distortion", "load"]
