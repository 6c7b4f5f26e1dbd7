"""The numbers behind docs/sum_mod.md and docs/heart_rate.md, computed from the sweeps' own result
directories (nothing here is typed in by hand).

    python examples/answers.py sum_mod [--study DIR] [--curve DIR] [--baselines FILE]
    python examples/answers.py heart_rate [--study DIR]

Defaults: the directories `jaxfit sweep examples/<spec>.toml --out jaxfit-runs/<spec>` writes.
Prints Markdown tables; `--json FILE` also writes them as data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import pandas as pd

TARGET_LOSS = 0.0016  # document 2's reported loss on circles after 1,000 epochs


def _hidden(h) -> str:
    h = list(h)
    return "x".join(map(str, h)) if h else "linear"


def _weights(row) -> int:
    """Trainable weights of a row's network (its inputs: 2 raw or 2 * fourier_features encoded)."""
    fan = 2 * int(row["fourier_features"]) if row["encoding"] == "fourier" else 2
    n = 0
    for w in list(row["hidden"]) + [3]:
        n += fan * w + w
        fan = w
    return n


def _label(row, cols) -> str:
    parts = []
    for c in cols:
        v = row[c]
        parts.append(f"{c}={_hidden(v) if c == 'hidden' else v}")
    return ", ".join(parts)


def _md(df: pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(floatfmt.format(v) if isinstance(v, (float, np.floating)) and math.isfinite(v) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def load_table(d: str) -> pd.DataFrame:
    path = os.path.join(d, "table.parquet")
    if not os.path.exists(path):
        sys.exit(f"answers: {path} not found: run the sweep first (see the spec's header)")
    t = pd.read_parquet(path)
    t["hidden"] = t["hidden"].map(tuple)
    return t


GROUP = ["hidden", "activation", "output", "encoding", "fourier_features", "fourier_scale", "optimizer", "lr", "schedule",
         "batch_size", "dropout", "epochs"]


def sum_mod(a) -> dict:
    t = load_table(a.study)
    g = t.groupby(GROUP, dropna=False)
    s = g.agg(val_mean=("final_val_acc", "mean"), val_std=("final_val_acc", "std"),
              val_best_epoch_mean=("best_val_acc", "mean"), train_mean=("final_train_acc", "mean"),
              train_max=("final_train_acc", "max"), seeds=("seed", "count")).reset_index()
    s["weights"] = [_weights(r) for _, r in s.iterrows()]
    s["net"] = s["hidden"].map(_hidden)
    res: dict = {}
    best = s.sort_values("val_mean", ascending=False).head(10)
    print("## Best seed-averaged final validation accuracy (n = 2,000)\n")
    cols = ["net", "activation", "output", "encoding", "fourier_scale", "optimizer", "lr", "schedule",
            "batch_size", "dropout", "seeds", "train_mean", "val_mean", "val_std", "val_best_epoch_mean"]
    print(_md(best[cols]))
    res["best"] = best[cols].to_dict("records")
    fits = s[s["train_mean"] >= 0.99].sort_values("weights")
    print("\n## Smallest networks whose seed-averaged training accuracy is at least 99%\n")
    if len(fits):
        print(_md(fits[["net", "weights"] + cols[1:]].head(5)))
    else:
        print("none: no configuration fits the training set")
    res["smallest_fit"] = fits[["net", "weights"] + cols[1:]].head(5).to_dict("records")
    print("\n## Each axis: the best and the mean seed-averaged validation accuracy over the other axes\n")
    res["axes"] = {}
    for ax in ("hidden", "activation", "encoding", "fourier_scale", "optimizer", "lr", "schedule", "batch_size",
               "dropout"):
        sub = s[s["encoding"] == "fourier"] if ax == "fourier_scale" else s
        m = sub.groupby(ax)["val_mean"].agg(["max", "mean", "count"]).reset_index()
        m[ax] = m[ax].map(_hidden) if ax == "hidden" else m[ax]
        if m.shape[0] > 1:
            print(f"### {ax}\n\n{_md(m)}\n")
            res["axes"][ax] = m.to_dict("records")
    raw = s[s["encoding"] == "identity"]
    print(f"Raw points (identity encoding): best seed-averaged validation {raw['val_mean'].max():.4f}, best "
          f"training {raw['train_max'].max():.4f} over {len(raw)} groups.")
    res["raw_best_val"] = float(raw["val_mean"].max())
    res["raw_best_train"] = float(raw["train_max"].max())
    doc = s[(s["output"] == "softmax")]
    if len(doc):
        r = doc.iloc[0]
        print(f"Document 1's FeedForward (2-2-3, softmax + CrossEntropyLoss, SGD 1e-3 momentum 0.9, batch 1, 50 "
              f"epochs): validation {r['val_mean']:.4f} +- {r['val_std']:.4f}, training {r['train_mean']:.4f} "
              f"({int(r['seeds'])} seeds).")
        res["document_model"] = {"val_mean": float(r["val_mean"]), "train_mean": float(r["train_mean"])}
    if "diverged" in t.columns:
        print(f"Diverged runs: {int(t['diverged'].sum())} of {len(t)}.")
    if a.curve and os.path.exists(os.path.join(a.curve, "table.parquet")):
        c = load_table(a.curve)
        lc = c.groupby(["data_n", "encoding"]).agg(train_mean=("final_train_acc", "mean"),
                                                    val_mean=("final_val_acc", "mean"),
                                                    val_std=("final_val_acc", "std"),
                                                    val_min=("final_val_acc", "min"),
                                                    val_max=("final_val_acc", "max"),
                                                    seeds=("seed", "count")).reset_index()
        print("\n## Learning curve (256x256, Fourier scale 30 vs raw points, Adam 1e-3 cosine, batch 256, "
              "30 epochs)\n")
        print(_md(lc))
        res["learning_curve"] = lc.to_dict("records")
    if a.baselines and os.path.exists(a.baselines):
        with open(a.baselines) as f:
            b = pd.DataFrame(json.load(f)["rows"])
        bt = b.groupby(["n", "features"]).agg(train_mean=("train_acc", "mean"), val_mean=("val_acc", "mean"),
                                              val_std=("val_acc", "std")).reset_index()
        print("\n## Gradient boosting (HistGradientBoostingClassifier, defaults) on the same splits\n")
        print(_md(bt))
        res["baselines"] = bt.to_dict("records")
    return res


def heart_rate(a) -> dict:
    t = load_table(a.study)
    import jaxfit

    res: dict = {"datasets": {}}
    for name in sorted(t["data"].unique()):
        r = jaxfit.SweepResult.load(os.path.join(a.study, name))
        curve = r.curves["full_train_loss"]
        reach = np.array([int(np.argmax(c <= TARGET_LOSS)) + 1 if (c <= TARGET_LOSS).any() else -1 for c in curve])
        tab = r.table.reset_index()
        tab["reach"] = reach
        cols = ["input_norm", "loss", "optimizer", "lr", "schedule"]
        g = tab.groupby(cols)
        s = g.agg(seeds=("seed", "count"), reached=("reach", lambda v: int((v > 0).sum())),
                  median_epochs=("reach", lambda v: float(np.median(v[v > 0])) if (v > 0).any() else math.nan),
                  final_loss_median=("final_full_train_loss", "median"),
                  final_loss_min=("final_full_train_loss", "min"),
                  train_acc_mean=("final_train_acc", "mean")).reset_index()
        flags = [f for f in ("prior_plateau", "unnormalised_inputs", "too_slow", "diverged") if f in tab.columns]
        for f in flags:
            s[f] = g[f].agg(lambda v: int(pd.Series(v).fillna(False).astype(bool).sum())).to_numpy()
        s = s.sort_values(["median_epochs", "final_loss_median"], na_position="last")
        print(f"## {name}: epochs to reach full training loss <= {TARGET_LOSS} (of 2,000), per remedy\n")
        print(_md(s, "{:.4g}"))
        print()
        res["datasets"][name] = s.to_dict("records")
        if name == "heart_rate":
            raw = tab[tab["input_norm"] == "none"].index.to_numpy()
            thr = []
            for i in raw:
                p = r.params(int(i))["dense"][0]
                w, b = np.asarray(p["w"])[:, 0], np.asarray(p["b"])
                thr.append((-b / w).tolist())
            thr = np.array(thr)
            print(f"Raw inputs: the {thr.shape[1]} hidden units' learned thresholds -b/w (where each sigmoid is "
                  f"0.5) lie between {np.nanmin(thr):.1f} and {np.nanmax(thr):.1f} bpm over {len(raw)} runs "
                  f"(median {np.nanmedian(thr):.1f}); the label's threshold is 91 bpm. Their biases: "
                  f"{np.nanmin([r.params(int(i))['dense'][0]['b'].min() for i in raw]):.2f} to "
                  f"{np.nanmax([r.params(int(i))['dense'][0]['b'].max() for i in raw]):.2f}.\n")
            res["raw_thresholds"] = {"min": float(np.nanmin(thr)), "max": float(np.nanmax(thr)),
                                     "median": float(np.nanmedian(thr))}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("question", choices=("sum_mod", "heart_rate"))
    p.add_argument("--study", default=None)
    p.add_argument("--curve", default=os.path.join("jaxfit-runs", "sum_mod_learning_curve"))
    p.add_argument("--baselines", default=os.path.join("docs", "results", "sum_mod_baselines.json"))
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    a.study = a.study or os.path.join("jaxfit-runs", "sum_mod_study" if a.question == "sum_mod" else "heart_rate_study")
    res = sum_mod(a) if a.question == "sum_mod" else heart_rate(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
