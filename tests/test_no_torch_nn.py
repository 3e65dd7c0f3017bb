"""The package is made of raw tensors: nothing in src/mlplab uses torch.nn, torch.optim or torch.utils.data.

    python -m pytest tests/test_no_torch_nn.py -q

Checked on the syntax tree, so docstrings and comments that name these modules are fine; imports (any form,
aliases included), attribute chains such as `torch.nn.functional.relu`, and importlib calls are not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mlplab"
FORBIDDEN = ("torch.nn", "torch.optim", "torch.utils.data")


def _forbidden(dotted: str) -> bool:
    """True for torch.nn, torch.nn.functional, torch.optim.lr_scheduler, ... but not torch.nansum."""
    return any(dotted == f or dotted.startswith(f + ".") for f in FORBIDDEN)


def _dotted(node: ast.AST) -> str | None:
    """'a.b.c' for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every use of a forbidden module in `source`, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    # local name -> the module path it stands for, from `import torch as T` or `from torch import utils`
    bound = {}
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _forbidden(a.name):
                    flag(node, f"import {a.name}")
                if a.name == "torch" or a.name.startswith("torch."):
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _forbidden(node.module) or _forbidden(full):
                    flag(node, f"from {node.module} import {a.name}")
                elif node.module.split(".")[0] == "torch":
                    bound[a.asname or a.name] = full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None:
                head, _, rest = dotted.partition(".")
                resolved = bound.get(head, head) + ("." + rest if rest else "")
                if _forbidden(resolved):
                    flag(node, dotted)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = _dotted(node.func) or ""
            arg = node.args[0].value
            is_import = name.split(".")[-1] in ("import_module", "__import__")
            if is_import and isinstance(arg, str) and _forbidden(arg):
                flag(node, f"{name}({arg!r})")
    return found


def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) >= 5, f"expected the package's modules under {SRC}, found {files}"
    return files


def test_src_uses_no_torch_nn_optim_or_data():
    found = [v for p in _sources() for v in violations(p.read_text(), str(p.relative_to(SRC.parent)))]
    assert not found, "the package must not use torch.nn, torch.optim, torch.utils.data:\n" + "\n".join(found)


@pytest.mark.parametrize("code", [
    "import torch.nn",
    "import torch.nn.functional as F",
    "import torch.optim",
    "import torch.utils.data",
    "from torch.nn import functional",
    "from torch.nn.functional import relu",
    "from torch import nn",
    "from torch import optim",
    "from torch.utils import data",
    "from torch.utils.data import DataLoader",
    "from torch.optim.lr_scheduler import StepLR",
    "import torch\ny = torch.nn.functional.relu(x)",
    "import torch\nopt = torch.optim.SGD(p, lr=0.1)",
    "import torch\nds = torch.utils.data.TensorDataset(x)",
    "import torch as T\nT.nn.Linear(2, 3)",
    "from torch import utils\nutils.data.DataLoader(ds)",
    "import importlib\nimportlib.import_module('torch.nn')",
    "def f(x):\n    import torch\n    return torch.nn.functional.gelu(x)",
])
def test_checker_catches(code):
    assert violations(code), f"not caught:\n{code}"


@pytest.mark.parametrize("code", [
    "import torch\nfrom torch import Tensor",
    "import torch\ny = torch.nansum(x) + torch.nn_like(x)",
    "from torch.distributions import Uniform",
    "import torch.utils.checkpoint",
    '"""Compared against torch.nn.functional and torch.optim in the tests."""',
    "# import torch.nn\nx = 1",
    "optim = 1\ny = optim.sgd_step",
])
def test_checker_allows(code):
    assert violations(code) == []
