"""How a training run ends: the four outcomes, and the line below which a finite model has collapsed.

Shared by the trainer, which labels each model as it stops (`train.Result.outcome`), and by the analysis of stored
results, which labels stored trials the same way (`analysis.outcome`); plain constants, no torch.
"""

OUTCOMES = ("converged", "budget", "collapsed", "diverged")
# A finite model whose reported validation accuracy is below this many times chance (2 / 10 classes = 20% on MNIST)
# has collapsed: it predicts one or two classes, whatever its loss did.
COLLAPSE_FACTOR = 2.0
