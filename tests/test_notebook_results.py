"""Training-dependent notebook results, compared with committed references within a stated tolerance.

nbval compares the deterministic cells of every notebook exactly. Cells whose numbers come out of a
training run in the notebook (ULSAD in 07; chapter 06 loads committed fine-tunings, which nbval checks)
may differ in the last digits between CPUs and kernel builds, so nbval ignores their output; instead this
test runs those notebooks with papermill,
reads the result each one records (``runs.record_result``) and checks every recorded number against
``tests/notebook_references.json``:

* AUROC / AUPRO / accuracy values (fractions) within ``absolute`` (±0.05 for ULSAD/REB) of the reference,
* every other number within ``relative`` (e.g. 10 %) of it,
* strings (method, backbone, category) equal; keys listed in ``ignore`` (timings) skipped.

A changed algorithm moves these numbers far more than a different CPU does (a model that did not
learn scores ≈ 0.5), so the test still fails on a real change. After a deliberate change, re-execute
the notebook (``make execute``) and refresh the references::

    .venv/bin/python tests/test_notebook_results.py --update 07_ulsad
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "tests" / "notebook_references.json"
NOTEBOOKS = ROOT / "notebooks"
FRACTION_WORDS = ("auroc", "aupro", "accuracy")


def flatten(result: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": [0.1, 0.2]}`` -> ``{"a.b": 1, "c.0": 0.1, "c.1": 0.2}``."""
    flat = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat.update(flatten(dict(enumerate(value)), name + "."))
        else:
            flat[name] = value
    return flat


def differences(result: dict, reference: dict) -> list[str]:
    """One sentence per recorded value that is missing or outside the reference's tolerance."""
    got = flatten(result)
    absolute, relative = reference["absolute"], reference["relative"]
    problems = []
    for key, expected in flatten(reference["metrics"]).items():
        if any(word in key for word in reference.get("ignore", [])):
            continue
        if key not in got:
            problems.append(f"{key}: not recorded (reference {expected!r}).")
            continue
        value = got[key]
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            fraction = any(word in key.lower() for word in FRACTION_WORDS)
            tolerance = absolute if fraction else relative * abs(expected)
            if not isinstance(value, (int, float)) or not math.isclose(value, expected, rel_tol=0, abs_tol=tolerance):
                problems.append(f"{key}: {value!r}, reference {expected!r} ± {tolerance:.3g}.")
        elif value != expected:
            problems.append(f"{key}: {value!r}, reference {expected!r}.")
    return problems


def run_notebook(name: str, out_dir: Path, parameters: dict) -> dict:
    """Execute ``notebooks/<name>.ipynb`` with papermill on its defaults; return its recorded result."""
    result_path = out_dir / f"{name}.json"
    command = [sys.executable, "-m", "papermill", "-k", "python3", "--cwd", str(NOTEBOOKS), "--no-progress-bar",
               str(NOTEBOOKS / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"), "-p", "result_path", str(result_path)]
    for key, value in parameters.items():
        command += ["-p", key, str(value)]
    completed = subprocess.run(command, capture_output=True, text=True)
    assert completed.returncode == 0, f"papermill failed on {name}:\n{completed.stderr[-3000:]}"
    return json.loads(result_path.read_text())


def load_references() -> dict:
    return json.loads(REFERENCES.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(load_references()))
def test_recorded_results_match_the_references(name, tmp_path):
    reference = load_references()[name]
    result = run_notebook(name, tmp_path, reference.get("parameters", {}))
    problems = differences(result, reference)
    assert not problems, f"{name} moved outside the tolerance of tests/notebook_references.json:\n" + "\n".join(problems)


def test_differences_accepts_small_and_rejects_large_changes():
    reference = {"absolute": 0.05, "relative": 0.1, "ignore": ["seconds"],
                 "metrics": {"method": "ulsad", "image_auroc": 0.80, "loss": 20.0, "train_seconds": 80.0,
                             "global": {"image_auroc_logical": 0.9}}}
    near = {"method": "ulsad", "image_auroc": 0.83, "loss": 21.5, "train_seconds": 5.0,
            "global": {"image_auroc_logical": 0.86}}
    assert differences(near, reference) == []
    broken = {"method": "ulsad", "image_auroc": 0.50, "loss": 25.0, "global": {}}
    problems = differences(broken, reference)
    assert [p.split(":")[0] for p in problems] == ["image_auroc", "loss", "global.image_auroc_logical"]
    assert differences({**near, "method": "lwinnn"}, reference) == ["method: 'lwinnn', reference 'ulsad'."]


def update(names: list[str]) -> None:
    """Re-run the named notebooks and store their results as the new references (keeps tolerances)."""
    import tempfile

    references = load_references() if REFERENCES.exists() else {}
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            entry = references.get(name, {"absolute": 0.05, "relative": 0.1, "ignore": ["seconds"]})
            entry["metrics"] = run_notebook(name, Path(work), entry.get("parameters", {}))
            references[name] = entry
            print(f"{name}: {len(flatten(entry['metrics']))} values recorded")
    REFERENCES.write_text(json.dumps(references, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "--update":
        sys.exit("usage: python tests/test_notebook_results.py --update NOTEBOOK_NAME [...]")
    update(sys.argv[2:])
