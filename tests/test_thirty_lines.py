"""The thirty-line plain-PyTorch MLP that section 2 of the study shows a student, run from the notebook template's own
source and compared with torch.nn and torch.optim: what the study prints as "what a student writes" must be right."""

from importlib import resources

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="module")
def student():
    """The namespace the template's thirty-line cell defines (init, forward, loss_fn, accuracy, fit)."""
    source = resources.files("mlplab").joinpath("study_notebook.py").read_text()
    cells = source.split("\n# %%")
    (cell,) = [c for c in cells if "\ndef fit(" in c]
    code = cell.split("\n", 1)[1]  # drop the rest of the "# %%" line
    assert len([line for line in code.splitlines() if line.strip()]) <= 30, "no longer thirty lines"
    namespace: dict = {}
    exec(compile(code, "study_notebook.py:thirty-lines", "exec"), namespace)
    return namespace


def test_loss_is_torch_cross_entropy(student):
    g = torch.Generator().manual_seed(0)
    logits, y = 5 * torch.randn(64, 10, generator=g), torch.randint(0, 10, (64,), generator=g)
    assert torch.allclose(student["loss_fn"](logits, y), F.cross_entropy(logits, y), rtol=1e-6, atol=1e-6)


def test_init_draws_uniform_weights_and_zero_biases(student):
    torch.manual_seed(0)
    w, b = student["init"](784, 256)
    assert w.shape == (784, 256) and w.requires_grad and b.requires_grad  # leaves autograd differentiates
    w, b = w.detach(), b.detach()
    assert w.abs().max() <= 0.01 and w.abs().max() > 0.009 and abs(float(w.mean())) < 1e-3
    assert torch.equal(b, torch.zeros(256))


def test_fit_trains_exactly_as_torch_nn_and_torch_optim_sgd(student):
    """Same draws, same batches: the hand-written loop and a torch.nn.Linear model trained by torch.optim.SGD on
    torch's cross-entropy end at the same weights and report the same accuracies."""
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(784, 10, generator=g)  # labels a function of the pixels, so there is something to learn
    x, xv = torch.rand(600, 784, generator=g), torch.rand(200, 784, generator=g)
    y, yv = (x @ teacher).argmax(1), (xv @ teacher).argmax(1)
    params, log = student["fit"](x, y, xv, yv, epochs=2, lr=0.1, batch=128, seed=3)

    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    torch.manual_seed(3)  # the same draws in the same order: w1, w2, then one permutation per epoch
    w1 = torch.distributions.Uniform(-0.01, 0.01).sample((784, 256))
    w2 = torch.distributions.Uniform(-0.01, 0.01).sample((256, 10))
    with torch.no_grad():
        for layer, w in ((model[0], w1), (model[2], w2)):
            layer.weight.copy_(w.T)
            layer.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    accuracies = []
    for _ in range(2):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            accuracies.append([(model(a).argmax(1) == b).float().mean().item() for a, b in ((x, y), (xv, yv))])

    (v1, c1), (v2, c2) = params
    for mine, theirs in ((v1, model[0].weight.T), (c1, model[0].bias), (v2, model[2].weight.T), (c2, model[2].bias)):
        assert torch.allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(v2, w2, atol=1e-4), "the weights did not move: the comparison would prove nothing"
    assert [a for h in log for a in (h["train_accuracy"], h["val_accuracy"])] == pytest.approx(
        [a for pair in accuracies for a in pair], abs=1e-9)
    assert log[-1]["train_accuracy"] > 0.3, "above chance (0.1): the loop learns"
    assert [h["epoch"] for h in log] == [1, 2]
