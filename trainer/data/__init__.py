"""Data sets for training and evaluation, named by spec strings.

Specs: ``folder:PATH``, ``elpv``, ``fmnist:<class>``.

``load_dataset(spec, image_size, gamma=..., seed=...)`` returns a :class:`DataSet` of uint8 NHWC
train / val / test :class:`Split` s, decoded and resized by ``agad_stream.preprocess`` exactly as
the scorers do it. See each module's docstring for its protocol and split.
"""

from trainer.data.dataset import DataSet, Split
from trainer.data.load import load_dataset

__all__ = ["DataSet", "Split", "load_dataset"]
