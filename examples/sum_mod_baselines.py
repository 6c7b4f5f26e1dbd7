"""Gradient-boosting baselines for sum_mod on the study's own splits (standing in for document 1's
CatBoost, which reached about 75%): scikit-learn's HistGradientBoostingClassifier on the raw points
(x0, x1) and on the single feature s = x0 + x1, for n = 2,000, 20,000 and 200,000 training points
(validation: sum_mod's n // 4 held-out points), three random states each.

    python examples/sum_mod_baselines.py [--out docs/results/sum_mod_baselines.json] [--n 2000,20000,200000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

import jaxfit


def features(x: np.ndarray, kind: str) -> np.ndarray:
    return x if kind == "raw" else x.sum(axis=1, keepdims=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("docs", "results", "sum_mod_baselines.json"))
    p.add_argument("--n", default="2000,20000,200000")
    p.add_argument("--states", type=int, default=3)
    a = p.parse_args(argv)
    rows = []
    for n in [int(v) for v in a.n.split(",")]:
        data = jaxfit.datasets.sum_mod(n=n, seed=0)
        for kind in ("raw", "s"):
            for rs in range(a.states):
                t0 = time.perf_counter()
                clf = HistGradientBoostingClassifier(random_state=rs)
                clf.fit(features(data.x_train, kind), data.y_train)
                row = {"n": n, "features": kind, "random_state": rs,
                       "train_acc": float(clf.score(features(data.x_train, kind), data.y_train)),
                       "val_acc": float(clf.score(features(data.x_val, kind), data.y_val)),
                       "seconds": time.perf_counter() - t0}
                rows.append(row)
                print(f"n={n:>6} features={kind:<3} state={rs}: train {row['train_acc']:.4f} "
                      f"val {row['val_acc']:.4f} ({row['seconds']:.1f} s)", flush=True)
    import sklearn

    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"what": "HistGradientBoostingClassifier() defaults on sum_mod(n, seed=0)",
                   "sklearn": sklearn.__version__, "machine": jaxfit.results.cpu_name(), "rows": rows}, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
