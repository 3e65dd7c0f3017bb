"""mlplab: multilayer perceptrons from raw tensors on MNIST, one at a time or whole hyperparameter studies at once."""

from mlplab.config import TrainConfig
from mlplab.data import load_mnist, make_splits
from mlplab.presets import PRESETS, preset
from mlplab.train import TrainResult, train, train_population

__version__ = "0.1.0"
# Raised by hand whenever a change alters the numbers training produces (an update's rounding, a random stream, a
# default); ordinary commits leave it alone, so stores keep resuming. Trial keys and store rows carry it.
NUMERICS_VERSION = 3  # 3: cross-entropy as logsumexp(z) - z_y; a single model takes the batched product
__all__ = ["PRESETS", "TrainConfig", "TrainResult", "load_mnist", "make_splits", "preset", "train",
           "train_population", "__version__", "NUMERICS_VERSION"]
