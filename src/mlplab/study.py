"""`mlplab study`: the whole hyperparameter case study, trained through the sweep engine, written as an executed
notebook (plus HTML and figures) whose cells read the result store.

    mlplab study                      # the full study: ~400 trials, 3 seeds, 3 epochs each
    mlplab study --quick              # a reduced study for a quick look (and CI): 1 seed, 1 epoch
    mlplab study --out report --store runs/study.sqlite --seeds 5

Trials that are already in the store are reused, so a second run (or one after Ctrl-C) only trains what is missing
and re-executes the notebook. The notebook and HTML are written atomically.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlplab.config import TrainConfig
from mlplab.files import atomic_write
from mlplab.sweep import SweepSpec

# The setting every one-at-a-time sweep varies around: the course's MLP (ReLU, SGD 0.1, batch 128) at a width that
# keeps the study fast, with He's uniform init so that deep stacks train too. The init-scale experiments use the
# course's uniform(-a, a) instead, where a is an absolute bound (the course's 0.01 is one of the values).
BASE = {"hidden": [128], "activation": "relu", "init": "kaiming_uniform", "optimizer": "sgd", "lr": 0.1,
        "batch_size": 128}
GRID_WIDTH = 64  # the crossed grids use a narrower MLP: their cost is (cells x seeds x width)


@dataclass(frozen=True)
class Experiment:
    name: str  # key used by the notebook
    title: str  # human title
    setting: str  # the setting it varies ("" for none)
    spec: SweepSpec
    unit: str = ""


def experiments(quick: bool = False, seeds: int | None = None) -> dict[str, Experiment]:
    """The study's experiments. Full: 3 seeds x 3 epochs; quick: 1 seed x 1 epoch and fewer values."""
    n_seeds = seeds if seeds is not None else (1 if quick else 3)
    epochs = 1 if quick else 3
    base = {**BASE, "epochs": epochs}

    def one(name, title, setting, values, unit="", base_over=None, grid=False, extra_axes=None, n=n_seeds):
        axes = {setting: values} if setting else {}
        axes.update(extra_axes or {})
        spec = SweepSpec(base={**base, **(base_over or {})}, axes=axes, seeds=n, grid=grid, name=name,
                         source=f"study:{name}")
        return Experiment(name, title, setting, spec, unit)

    q = quick
    exps = [
        one("linear", "Softmax regression", "", None, base_over={"hidden": []}),
        one("hidden", "Hidden layer width", "hidden",
            [1, 4, 16, 64, 256, 1024] if q else {"pow2": [0, 12]}, " units"),
        one("activation", "Activation function", "activation",
            ["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity"]),
        one("init", "Initialization scheme", "init",
            ["zeros", "uniform:0.01", "uniform:0.05", "normal:0.01", "xavier_uniform", "xavier_normal",
             "kaiming_uniform", "kaiming_normal"]),
        one("init_scale", "Initialization scale a of uniform(-a, a)", "init_scale",
            {"logspace": [-4, 1, 6 if q else 11]}, base_over={"init": "uniform"}),
        one("lr", "Learning rate", "lr", {"logspace": [-4, 1, 6 if q else 11]}),
        one("batch_size", "Batch size", "batch_size", [32, 128, 512, 2048] if q else {"pow2": [4, 12]}),
        one("depth", "Depth (hidden layers of 128)", "depth", [0, 1, 2, 4] if q else [0, 1, 2, 3, 4, 5, 6]),
        one("lr_x_init_scale", "Learning rate x init scale", "lr", {"logspace": [-3, 1, 5]},
            base_over={"hidden": [GRID_WIDTH], "init": "uniform"}, grid=True,
            extra_axes={"init_scale": {"logspace": [-3, 1, 5]}}),
        one("lr_x_hidden", "Learning rate x hidden width", "lr", {"logspace": [-3, 1, 5]}, grid=True,
            extra_axes={"hidden": [2, 16, 128] if q else [2, 8, 32, 128, 512]}),
        one("seeds", "Init seed x data-order seed", "seed", list(range(3 if q else 5)), grid=True,
            extra_axes={"data_seed": list(range(3 if q else 5))}, n=1),
    ]
    return {e.name: e for e in exps}


def all_trials(exps: dict[str, Experiment]) -> list[TrainConfig]:
    """Every trial of every experiment, each once (experiments share e.g. the base config)."""
    seen, out = set(), []
    for e in exps.values():
        for t in e.spec.trials():
            if t not in seen:
                seen.add(t)
                out.append(t)
    return out


def experiment_records(records: list[dict], exp: Experiment) -> list[dict]:
    """The stored records that belong to one experiment (looked up by trial key)."""
    from mlplab.store import trial_key

    by_key = {r["key"]: r for r in records}
    return [by_key[k] for k in (trial_key(t) for t in exp.spec.trials()) if k in by_key]


# ----------------------------------------------------------------------------------------------------------------
# Building and executing the notebook

TEMPLATE = "study_notebook.py"


def template_cells(params: dict) -> list:
    """The template (a percent-format script in this package) as notebook cells; the cell tagged `parameters`
    gets `params` instead of its defaults."""
    import nbformat.v4 as nbf

    text = importlib.resources.files("mlplab").joinpath(TEMPLATE).read_text()
    cells = []
    for chunk in text.split("\n# %%")[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip().startswith("[markdown]"):
            md = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbf.new_markdown_cell(md))
            continue
        tags = [t.strip() for t in header.partition("tags=")[2].strip(" []").replace('"', "").split(",") if t.strip()]
        if "parameters" in tags:
            body = "\n".join(f"{k} = {v!r}" for k, v in params.items())
        cell = nbf.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        if "hide-input" in tags:
            cell.metadata["jupyter"] = {"source_hidden": True}
        cells.append(cell)
    return cells


def build_notebook(params: dict):
    import nbformat.v4 as nbf

    nb = nbf.new_notebook(cells=template_cells(params))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb, cwd: Path, timeout: int = 900):
    """Run every cell in a fresh kernel of this Python (errors stop the run and are raised)."""
    from nbclient import NotebookClient

    env_kernel = _ensure_kernel()
    client = NotebookClient(nb, timeout=timeout, kernel_name=env_kernel, resources={"metadata": {"path": str(cwd)}})
    # The kernel's own log (e.g. its note on running over loopback TCP) is noise for a report: cell errors and
    # warnings are captured in the notebook's outputs instead.
    client.execute(stderr=subprocess.DEVNULL)
    return nb


def _ensure_kernel() -> str:
    """A kernelspec that runs this very interpreter (so the notebook sees the same mlplab and torch).

    Its name and folder are keyed by the interpreter's path, so studies run from different virtual environments
    at the same time never start each other's kernels. Jupyter finds it through JUPYTER_PATH.
    """
    import hashlib

    name = "mlplab-" + hashlib.sha256(sys.executable.encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"mlplab-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"
    spec_dir = target / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mlplab (Python 3)", "language": "python", "metadata": {"debugger": False}}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    paths = os.environ.get("JUPYTER_PATH", "")
    if str(target) not in paths.split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(target), paths) if p)
    return name


def to_html(nb) -> str:
    """Self-contained HTML: images inline, observation cells without their code, no external scripts."""
    import re

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.remove_input_tags = ("hide-input",)
    c.TagRemovePreprocessor.enabled = True
    exporter = HTMLExporter(config=c, template_name="classic")
    html, _ = exporter.from_notebook_node(nb)
    # Drop anything fetched from the network (require.js, MathJax): the report needs neither.
    html = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", html)
    html = re.sub(r'<link[^>]*href="https?://[^"]*"[^>]*>', "", html)
    html = re.sub(r"<script[^>]*>\s*(?:(?!</script>).)*?MathJax(?:(?!</script>).)*</script>", "", html, flags=re.S)
    return html


def run_study(out: str | Path = "study", store: str | Path | None = None, quick: bool = False,
              device: str = "auto", seeds: int | None = None, progress: bool | None = None, log=print,
              backend: str = "local", address: str | None = None, deterministic: bool = False) -> dict:
    """Train what is missing, then write out/study.ipynb, out/study.html and out/figures/. Returns timings."""
    import nbformat

    from mlplab.device import resolve_device
    from mlplab.runner import run_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Path(store) if store is not None else out / "study.sqlite"
    dev = resolve_device(device)
    exps = experiments(quick, seeds)
    trials = all_trials(exps)
    t0 = time.perf_counter()
    report = run_sweep(trials, store, device=dev, progress=progress, name="study-quick" if quick else "study",
                       log=log, backend=backend, address=address, deterministic=deterministic)
    t_train = time.perf_counter() - t0
    if report.failed:
        raise RuntimeError(f"{report.failed} trial(s) failed; see `mlplab results {store}` (rerun to retry them)")
    log(f"training: {report.trained} trained, {report.skipped} reused, {t_train:.1f} s; writing the report")
    params = {"STORE": str(store.resolve()), "QUICK": quick, "SEEDS": seeds, "DEVICE": str(dev),
              "FIGURES": str((out / "figures").resolve())}
    t1 = time.perf_counter()
    nb = execute(build_notebook(params), cwd=out)
    for name, text in (("study.ipynb", nbformat.writes(nb)), ("study.html", to_html(nb))):
        with atomic_write(out / name, "w") as f:
            f.write(text)
    t_report = time.perf_counter() - t1
    log(f"wrote {out / 'study.ipynb'}, {out / 'study.html'} and {out / 'figures'} ({t_report:.1f} s)")
    return {"trials": len(trials), "trained": report.trained, "reused": report.skipped,
            "train_seconds": t_train, "report_seconds": t_report, "store": str(store)}
