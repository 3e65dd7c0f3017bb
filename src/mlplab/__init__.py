"""mlplab: multilayer perceptrons from raw tensors on MNIST, one at a time or whole hyperparameter studies at once."""

from mlplab.config import TrainConfig
from mlplab.data import load_mnist, make_splits
from mlplab.presets import PRESETS, preset
from mlplab.train import TrainResult, train, train_population

__version__ = "0.1.0"
__all__ = ["PRESETS", "TrainConfig", "TrainResult", "load_mnist", "make_splits", "preset", "train",
           "train_population", "__version__"]
