"""`mlplab study --quick` end to end, as a user runs it (the slowest test: about two minutes)."""

import json
import re
import subprocess
import sys

import pytest

from mlplab import analysis, study
from mlplab.store import Store

SECTIONS = ["## 1. The data", "## 2. The linear baseline", "## 3. The MLP", "## 4. Why not initialize with zeros",
            "## 5. One hyperparameter at a time", "## 6. Interactions", "## 7. Randomness", "## 8. Inside the model",
            "## 9. Reflection", "## 10. Summary"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cmd = [sys.executable, "-m", "mlplab", "study", "--quick", "--out", str(out), "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second


def _cells(out):
    return json.loads((out / "study.ipynb").read_text())["cells"]


def _markdown_outputs(cells):
    texts = []
    for c in cells:
        for o in c.get("outputs", []):
            if o["output_type"] == "display_data" and "text/markdown" in o["data"]:
                texts.append("".join(o["data"]["text/markdown"]))
    return texts


def test_second_run_reuses_every_trial(quick_study):
    out, first, second = quick_study
    n = len(study.all_trials(study.experiments(quick=True)))
    assert f"{n} trials ({n} trained, 0 reused)" in first.stdout
    assert f"{n} trials (0 trained, {n} reused)" in second.stdout


def test_notebook_is_executed_with_no_errors_or_warnings(quick_study):
    out, *_ = quick_study
    cells = _cells(out)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code)
    for c in code:
        for o in c["outputs"]:
            assert o["output_type"] != "error", o
            assert not (o["output_type"] == "stream" and o["name"] == "stderr"), o["text"]
    headings = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for s in SECTIONS:
        assert s in headings


def test_every_figure_section_has_images_and_files(quick_study):
    out, *_ = quick_study
    cells = _cells(out)
    section, images = None, {}
    for c in cells:
        src = "".join(c["source"])
        m = re.search(r"^## (\d+)\.", src, re.M) if c["cell_type"] == "markdown" else None
        if m:
            section = int(m.group(1))
        for o in c.get("outputs", []):
            if "image/png" in o.get("data", {}):
                images[section] = images.get(section, 0) + 1
    for s in (1, 2, 3, 4, 5, 6, 7, 8):
        assert images.get(s, 0) >= 1, f"section {s} has no figure"
    assert images[5] >= 7  # one per one-at-a-time sweep at least
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    svgs = sorted(p.stem for p in (out / "figures").glob("*.svg"))
    assert pngs == svgs and len(pngs) >= 20


def test_numbers_in_the_text_match_the_store(quick_study):
    out, *_ = quick_study
    texts = _markdown_outputs(_cells(out))
    with Store(out / "study.sqlite", create=False) as s:
        records = s.records()
    exps = study.experiments(quick=True)
    lin = analysis.by_setting(study.experiment_records(records, exps["linear"]), "hidden")[0]
    assert any(f"Softmax regression reaches {100 * lin.mean:.2f}%" in t for t in texts)
    lr = analysis.by_setting(study.experiment_records(records, exps["lr"]), "lr")
    b = analysis.best(lr)
    assert any(f"The best learning rate is **{analysis.fmt_value(b.value)}** with {100 * b.mean:.2f}%" in t
               for t in texts)
    vc = analysis.variance_components(study.experiment_records(records, exps["seeds"]))
    assert any(f"ranges from {100 * vc['min']:.2f}% to {100 * vc['max']:.2f}%" in t for t in texts)


def test_html_is_self_contained(quick_study):
    out, *_ = quick_study
    html = (out / "study.html").read_text()
    assert "<img" in html or "data:image/png;base64" in html
    assert not re.search(r'<script[^>]+src="https?://', html)
    assert not re.search(r'<link[^>]+href="https?://', html)
    assert "## 1. The data" not in html and "The data" in html
