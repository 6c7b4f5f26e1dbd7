"""The report's figures, each a PNG (matplotlib's Agg renderer, no pyplot state) with its caption,
and the axes, labels and ranked groups they are drawn from."""

from __future__ import annotations

import base64
import io
import math
import textwrap
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from ..config import Config

MAX_LINES = 200  # curves drawn per panel; more are sampled (the table keeps every config)
MAX_FACETS = 12  # panel rows in the curves figure
MAX_POINTS = 3000  # data points drawn per scatter panel
N_BOUNDARY = 4  # best and worst configs drawn as decision boundaries
DPI = 100
FIG_W = 12.0  # inches: 1,200 px at DPI, the page's content width

# Axis labels with units for the known generators' features.
FEATURE_LABELS = {
    "sum_bin": ("x0 (uniform on [0, 1))", "x1 (uniform on [0, 1))"),
    "sum_mod": ("x0 (uniform on [0, 1))", "x1 (uniform on [0, 1))"),
    "circles": ("x0 (position)", "x1 (position)"),
    "heart_rate": ("heart rate (beats/min, synthetic)",),
}


# --------------------------------------------------------------------------
# axes, labels, groups
# --------------------------------------------------------------------------


def fmt_value(name: str, v: Any, digits: int | None = None) -> str:
    """A config value as a short label (floats to `digits` significant digits in figures)."""
    if name == "hidden":
        return "x".join(map(str, v)) or "linear"
    if v is None:
        return "default"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if digits else f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + ")"
    return str(v)


def sort_values(name: str, values: list) -> list:
    def key(v):
        if name == "hidden":
            return (0, len(v), tuple(v))
        if v is None:
            return (-1, 0)
        if isinstance(v, (bool, int, float)):
            return (0, float(v))
        return (1, str(v))

    try:
        return sorted(values, key=key)
    except TypeError:
        return values


def varying_axes(configs: Sequence[Config]) -> list[tuple[str, list]]:
    """(field, sorted distinct values) for each Config field but seed that varies, in field order."""
    out = []
    for f in fields(Config):
        if f.name == "seed":
            continue
        vals = list(dict.fromkeys(getattr(c, f.name) for c in configs))
        if len(vals) > 1:
            out.append((f.name, sort_values(f.name, vals)))
    return out


@dataclass
class Group:
    """Configs that differ only in seed, with the seed-averaged ranking metric."""
    members: list[int]
    mean: float
    sd: float


RANK_METRIC = "val_acc"  # the report's ranking: SweepResult.ranking, as the command line's table


def ranked_groups(result) -> tuple[list[Group], str, str]:
    """(the groups best first, the table column ranked by, a note when it is not the asked metric),
    from `SweepResult.ranking`: diverged groups last, then the seed-averaged metric, ties by loss."""
    s, members, note = result.ranking(RANK_METRIC)
    col = s.columns[0][0]
    groups = [Group(m, float(s[(col, "mean")].iloc[k]), float(s[(col, "std")].iloc[k]))
              for k, m in enumerate(members)]
    return groups, col, note


def ranked_order(result, groups: list[Group], col: str) -> list[int]:
    """Config indices in the groups' rank order; within a group by the config's own `col` (best
    first, NaN last), then by index."""
    v = result.table[col].to_numpy(dtype=float)
    higher = col.endswith(("_acc",))
    out = []
    for g in groups:
        out.extend(sorted(g.members, key=lambda i: (not math.isfinite(v[i]), -v[i] if higher else v[i], i)))
    return out


def metric_words(col: str) -> str:
    """A table column as words: final_val_acc -> final validation accuracy."""
    words = {"val": "validation", "train": "training", "acc": "accuracy", "auc": "area under"}
    return " ".join(words.get(w, w) for w in col.split("_"))


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _class_colors(k: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _lighten(c, amount: float = 0.6):
    r, g, b = c[:3]
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


def _sample(n: int, cap: int, seed: int = 0) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _feature_labels(data) -> list[str]:
    known = FEATURE_LABELS.get(data.name)
    if known and len(known) == data.num_features:
        return list(known)
    return [f"feature {j}" for j in range(data.num_features)]


def _class_legend(ax, k: int, loc="best"):
    from matplotlib.lines import Line2D

    cols = _class_colors(k)
    shown = range(min(k, 12))
    handles = [Line2D([], [], marker="o", ls="", color=cols[c], label=f"class {c}") for c in shown]
    ax.legend(handles=handles, fontsize=8, loc=loc, framealpha=0.85,
              title=None if k <= 12 else f"(first 12 of {k})")


def _scatter(ax, data, x, y, jitter_rng, *, s=9, edge=True):
    """Points coloured by class: 2 features (first two of more) as x0/x1; 1 feature vs jittered class."""
    cols = np.array(_class_colors(data.num_classes))
    idx = _sample(len(y), MAX_POINTS)
    x, y = x[idx], y[idx]
    if data.num_features == 1:
        yy = y + jitter_rng.uniform(-0.18, 0.18, size=len(y))
        ax.scatter(x[:, 0], yy, c=cols[y], s=s, edgecolors="white" if edge else "none", linewidths=0.3)
    else:
        ax.scatter(x[:, 0], x[:, 1], c=cols[y], s=s, edgecolors="white" if edge else "none", linewidths=0.3)
    return len(idx)


def _setup_axes(ax, data):
    labels = _feature_labels(data)
    ax.set_xlabel(labels[0], fontsize=9)
    if data.num_features == 1:
        ax.set_ylabel("class (jittered)", fontsize=9)
        ax.set_yticks(range(data.num_classes))
        ax.set_ylim(-0.5, data.num_classes - 0.5)
    else:
        ax.set_ylabel(labels[1], fontsize=9)
    ax.tick_params(labelsize=8)


def fig_dataset(data) -> tuple[str, str]:
    splits = [("training", data.x_train, data.y_train)]
    if data.n_val:
        splits.append(("validation", data.x_val, data.y_val))
    fig = _figure(FIG_W if len(splits) == 2 else FIG_W / 2, 3.3 if data.num_features == 1 else 4.8)
    axes = fig.subplots(1, len(splits), squeeze=False)[0]
    rng = np.random.default_rng(0)
    for ax, (name, x, y) in zip(axes, splits):
        drawn = _scatter(ax, data, x, y, rng)
        extra = f", {drawn} drawn" if drawn < len(y) else ""
        first2 = f" (first 2 of {data.num_features} features)" if data.num_features > 2 else ""
        ax.set_title(f"{data.name}: {name} split (n={len(y)}{extra}){first2}", fontsize=10)
        _setup_axes(ax, data)
        if data.num_features >= 2:
            ax.set_aspect("equal", adjustable="box")
    _class_legend(axes[-1], data.num_classes, loc="upper right")
    if data.num_features == 1:
        note = "One feature: the feature against the class, jittered vertically so the points do not overlap."
    elif data.num_features == 2:
        note = "Points coloured by class."
    else:
        note = f"Only the first two of the {data.num_features} features are shown."
    return _png(fig), note


def _facets(configs: Sequence[Config], axes: list[tuple[str, list]]):
    """(facet axes, [(label, member indices)], colour axis or None, note)."""
    note = ""
    if not axes:
        return [], [("all configs", list(range(len(configs))))], None, note
    a0, v0 = axes[0]
    facet_axes = [axes[0]]
    if len(axes) >= 2:
        a1, v1 = axes[1]
        combos = {(getattr(c, a0), getattr(c, a1)) for c in configs}
        if len(v0) <= 3 and len(combos) <= 6:
            facet_axes = [axes[0], axes[1]]
    if len(facet_axes) == 1 and len(v0) > MAX_FACETS:
        # the first axis with few enough values, else the first (capped)
        few = [ax for ax in axes if len(ax[1]) <= MAX_FACETS]
        facet_axes = [few[0]] if few else [axes[0]]
    names = [a for a, _ in facet_axes]
    keys: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        keys.setdefault(tuple(getattr(c, n) for n in names), []).append(i)
    order = sorted(keys, key=lambda k: tuple(
        dict(facet_axes)[n].index(v) for n, v in zip(names, k)))
    if len(order) > MAX_FACETS:
        note = (f"{len(order)} values of {', '.join(names)}: the first {MAX_FACETS} are drawn "
                "(the ranked table has every config).")
        order = order[:MAX_FACETS]
    facets = [(", ".join(f"{n}={fmt_value(n, v, 3)}" for n, v in zip(names, k)), keys[k]) for k in order]
    rest = [ax for ax in axes if ax[0] not in names]
    # colour by the remaining axis with the most values (ties: field order)
    colour = max(rest, key=lambda a: len(a[1])) if rest else None
    return names, facets, colour, note


def _colour_map(colour, configs, seeds_vary: bool):
    """(list of per-config colours, legend entries [(label, colour)], legend title)."""
    import matplotlib

    if colour is None:
        if seeds_vary:
            seeds = sort_values("seed", list(dict.fromkeys(c.seed for c in configs)))
            if len(seeds) <= 10:
                cm = matplotlib.colormaps["tab10"]
                m = {s: cm(j) for j, s in enumerate(seeds)}
                return [m[c.seed] for c in configs], [(str(s), m[s]) for s in seeds], "seed"
        return ["C0"] * len(configs), [], None
    name, values = colour
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if len(values) <= 10 and not (numeric and len(values) > 6):
        cm = matplotlib.colormaps["tab10"]
        m = {v: cm(j) for j, v in enumerate(values)}
    else:  # an ordered axis with many values: a sequential map (dark = small), yellow end cut off
        cm = matplotlib.colormaps["viridis"]
        m = {v: cm(0.9 * j / (len(values) - 1)) for j, v in enumerate(values)}
    step = max(1, math.ceil(len(values) / 12))
    legend = [(fmt_value(name, v, 3), m[v]) for v in values[::step]]
    return [m[getattr(c, name)] for c in configs], legend, name


def _finite_points(x: np.ndarray, y: np.ndarray):
    ok = np.isfinite(y)
    return np.column_stack([x[ok], y[ok]])


def fig_curves(result, axes) -> tuple[str, str]:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    configs = result.configs
    names, facets, colour, note = _facets(configs, axes)
    seeds_vary = len({c.seed for c in configs}) > 1
    diverged = np.asarray(result.diverged)
    colours, legend, legend_title = _colour_map(colour, configs, seeds_vary)
    # a legend entry only for values some non-diverged config has (diverged lines are black)
    live = {tuple(colours[i]) if not isinstance(colours[i], str) else colours[i]
            for i in range(len(configs)) if not diverged[i]}
    legend = [(lab, c) for lab, c in legend if (tuple(c) if not isinstance(c, str) else c) in live]
    mse = any(c.loss == "mse" for c in configs)
    loss_unit = "loss (nats; squared error for mse)" if mse else "loss (nats)"
    metrics = [("train_loss", "training loss", loss_unit),
               ("val_loss", "validation loss", loss_unit),
               ("val_acc", "validation accuracy", "validation accuracy (fraction)")]
    epochs = np.arange(1, result.curves["val_acc"].shape[1] + 1)

    # Shared y range per metric from the configs that did not diverge.
    limits, logs = {}, {}
    ok_rows = ~diverged if (~diverged).any() else np.ones_like(diverged)
    for m, _, _ in metrics:
        v = result.curves[m][ok_rows]
        v = v[np.isfinite(v)]
        if m.endswith("loss"):
            pos = v[v > 0]
            log = pos.size > 0 and pos.max() / pos.min() > 20
            logs[m] = log
            if pos.size == 0:
                limits[m] = (0.0, 1.0)
            elif log:
                limits[m] = (pos.min() / 1.3, pos.max() * 1.3)
            else:
                lo, hi = float(v.min()), float(v.max())
                pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
                limits[m] = (max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        else:
            logs[m] = False
            if v.size == 0:
                limits[m] = (0.0, 1.0)
            else:
                lo, hi = float(v.min()), float(v.max())
                pad = max(0.02, 0.05 * (hi - lo))
                limits[m] = (max(0.0, lo - pad), min(1.0, hi + pad))

    nrow = len(facets)
    fig = _figure(FIG_W, 0.9 + 2.35 * nrow)
    grid = fig.subplots(nrow, 3, squeeze=False, sharex=True)
    sampled_any = False
    for r, (label, members) in enumerate(facets):
        keep = _sample(len(members), MAX_LINES, seed=r)
        drawn = [members[j] for j in keep]
        sampled_any |= len(drawn) < len(members)
        wrapped = "\n".join(textwrap.wrap(label, 48)) or label
        for col, (m, title, unit) in enumerate(metrics):
            ax = grid[r][col]
            segs, cols, dsegs = [], [], []
            for i in drawn:
                seg = _finite_points(epochs, result.curves[m][i])
                if len(seg) == 0:
                    continue
                if diverged[i]:
                    dsegs.append(seg)
                else:
                    segs.append(seg)
                    cols.append(colours[i])
            lw = 1.2 if len(drawn) <= 20 else 0.8 if len(drawn) <= 80 else 0.5
            alpha = 0.9 if len(drawn) <= 20 else 0.6 if len(drawn) <= 80 else 0.35
            if segs:
                ax.add_collection(LineCollection(segs, colors=cols, linewidths=lw, alpha=alpha))
            if dsegs:
                ax.add_collection(LineCollection(dsegs, colors="black", linewidths=1.0, linestyles="--",
                                                 alpha=0.9))
                for s in dsegs:  # a marker where a diverged line stops (often after one point)
                    ax.plot(s[-1:, 0], np.clip(s[-1:, 1], *limits[m]), "x", color="black", ms=7, mew=1.5)
            if logs[m]:
                ax.set_yscale("log")
            ax.set_ylim(*limits[m])
            ax.set_xlim(epochs[0] - 0.1 if len(epochs) > 1 else 0.5, epochs[-1] + (0.1 if len(epochs) > 1 else 0.5))
            count = f"{len(drawn)} of {len(members)} configs drawn" if len(drawn) < len(members) else \
                f"{len(members)} config{'s' if len(members) != 1 else ''}"
            ax.set_title(f"{wrapped}\n{title} ({count})", fontsize=9)
            ax.set_ylabel(unit, fontsize=8.5)
            ax.tick_params(labelsize=8)
            ax.grid(True, alpha=0.25, lw=0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if r == nrow - 1:
                ax.set_xlabel("epoch", fontsize=9)
            if not segs and not dsegs:
                ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center",
                        fontsize=9, color="0.4")
    handles = [Line2D([], [], color=c, lw=2, label=lab) for lab, c in legend]
    if diverged.any():
        handles.append(Line2D([], [], color="black", ls="--", marker="x", lw=1, label="diverged"))
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 11), fontsize=9,
                   title=f"colour: {legend_title}" if legend_title else None, title_fontsize=9, frameon=False)
    parts = []
    if names:
        parts.append(f"One row of panels per value of {' x '.join(names)}")
    else:
        parts.append("No config field but the seed varies: one row of panels")
    parts.append(f"one line per config, coloured by {legend_title}" if legend_title else "one line per config")
    if diverged.any():
        parts.append("diverged configs are black dashed lines up to their last finite value (marked x) and are "
                     "left out of the y ranges")
    if any(logs[m] for m, _, _ in metrics if m.endswith("loss")):
        parts.append("losses on a log scale (they span more than a factor of 20)")
    if sampled_any:
        parts.append(f"panels with more than {MAX_LINES} configs show a random sample of {MAX_LINES}")
    text = "; ".join(parts) + ". The training loss is the mean of the epoch's batch losses (train mode)."
    if note:
        text += " " + note
    return _png(fig), text


def fig_final(result, axes) -> tuple[str, str]:
    table = result.table
    acc = table["final_val_acc"].to_numpy(dtype=float)
    configs = result.configs
    diverged = np.asarray(result.diverged)
    if len(axes) >= 2:
        return _heatmaps(configs, axes, acc, diverged)

    # One axis (or none) varies: a strip chart.
    if axes:
        name, values = axes[0]
        pos = {v: j for j, v in enumerate(values)}
        xs = np.array([pos[getattr(c, name)] for c in configs], dtype=float)
        ticks = [fmt_value(name, v, 3) for v in values]
    else:
        name, xs, ticks = "all configs", np.zeros(len(configs)), ["all configs"]
    fig = _figure(min(FIG_W, 3.0 + 0.9 * len(ticks)), 4.0)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    jit = xs + rng.uniform(-0.15, 0.15, size=len(xs))
    idx = _sample(len(xs), 5000)
    ok = np.isfinite(acc)
    sel = idx[ok[idx] & ~diverged[idx]]
    ax.scatter(jit[sel], acc[sel], s=12, alpha=0.6, color="C0", label="config")
    sel = idx[ok[idx] & diverged[idx]]
    if sel.size:
        ax.scatter(jit[sel], acc[sel], s=24, marker="x", color="red", label="diverged config")
    for j in range(len(ticks)):
        a = acc[(xs == j) & ok]
        if a.size:
            ax.errorbar([j + 0.3], [a.mean()], yerr=[a.std(ddof=1)] if a.size > 1 else None, fmt="D",
                        color="black", ms=5, capsize=3, label="mean ± sd" if j == 0 else None)
    ax.set_xticks(range(len(ticks)), ticks, fontsize=8)
    ax.set_xlim(-0.6, len(ticks) - 0.4)
    ax.set_xlabel(name, fontsize=9)
    ax.set_ylabel("final validation accuracy (fraction)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"final validation accuracy by {name}" if axes else "final validation accuracy", fontsize=10)
    text = "One dot per config (seeds jittered sideways); black: mean ± sd over the configs of each value."
    return _png(fig), text


def _heatmaps(configs, axes, acc, diverged) -> tuple[str, str]:
    """Mean ± sd of the final val_acc over the two axes that vary most (ties: field order; more values
    on x), one panel per value of a third axis when one with at most 4 values varies."""
    import matplotlib

    top = sorted(axes, key=lambda a: -len(a[1]))[:2]
    (xn, xv), (yn, yv) = top if len(top[0][1]) >= len(top[1][1]) else top[::-1]
    others = [a for a in axes if a[0] not in (xn, yn)]
    small = sorted([a for a in others if len(a[1]) <= 4], key=lambda a: -len(a[1]))
    if small:
        pn, pv = small[0]
        panels = [(f"{pn}={fmt_value(pn, v, 3)}", [i for i, c in enumerate(configs) if getattr(c, pn) == v]) for v in pv]
    else:
        pn, panels = None, [("", list(range(len(configs))))]
    averaged = [a for a, _ in others if a != pn]
    nx, ny = len(xv), len(yv)
    stats = []
    for _, members in panels:
        cells: dict[tuple[int, int], list[int]] = {}
        for i in members:
            c = configs[i]
            cells.setdefault((yv.index(getattr(c, yn)), xv.index(getattr(c, xn))), []).append(i)
        mean = np.full((ny, nx), np.nan)
        sd = np.full((ny, nx), np.nan)
        for (r, k), ms in cells.items():
            a = acc[ms]
            a = a[np.isfinite(a)]
            if a.size:
                mean[r, k] = a.mean()
                sd[r, k] = a.std(ddof=1) if a.size > 1 else np.nan
        stats.append((cells, mean, sd))
    allm = np.concatenate([m[np.isfinite(m)] for _, m, _ in stats])
    vmin, vmax = (float(allm.min()), float(allm.max())) if allm.size else (0.0, 1.0)
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    pw = 1.0 + 0.85 * nx  # inches per panel
    ncols = max(1, min(len(panels), int((FIG_W - 0.8) // pw)))
    nrows = math.ceil(len(panels) / ncols)
    w = min(FIG_W, 1.0 + pw * ncols)
    h = min(14.0, nrows * (1.3 + 0.6 * ny))
    fig = _figure(w, h)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    annotate = nx * ny <= 150
    im = None
    for j, ax in enumerate(grid.flat):
        if j >= len(panels):
            ax.set_visible(False)
            continue
        label, _ = panels[j]
        cells, mean, sd = stats[j]
        im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                       origin="lower")
        ax.set_xticks(range(nx), [fmt_value(xn, v, 3) for v in xv], fontsize=8, rotation=30 if nx > 7 else 0)
        ax.set_yticks(range(ny), [fmt_value(yn, v, 3) for v in yv], fontsize=8)
        ax.set_xlabel(xn, fontsize=9)
        ax.set_ylabel(yn, fontsize=9)
        if annotate:
            fs = 8 if nx <= 8 else 7
            for (r, k), members in cells.items():
                m = mean[r, k]
                if not np.isfinite(m):
                    txt, colr = "n/a", "black"
                else:
                    txt = f"{m:.3f}\n± {sd[r, k]:.3f}" if np.isfinite(sd[r, k]) else f"{m:.3f}"
                    lum = np.dot(cmap((m - vmin) / (vmax - vmin))[:3], [0.299, 0.587, 0.114])
                    colr = "black" if lum > 0.5 else "white"
                nd = int(diverged[members].sum())
                if nd:
                    txt += f"\n({nd} div.)"
                ax.text(k, r, txt, ha="center", va="center", fontsize=fs, color=colr)
        ax.set_title(f"final validation accuracy by {yn} and {xn}" + (f"\n{label}" if label else ""), fontsize=10)
    cb = fig.colorbar(im, ax=grid.ravel().tolist(), shrink=0.9)
    cb.set_label("final validation accuracy (fraction)", fontsize=9)
    cb.ax.tick_params(labelsize=8)
    text = ("Mean ± sd of the final validation accuracy over the configs in each cell (its seeds"
            + (f", and the other varying axes: {', '.join(averaged)}" if averaged else "") + ")"
            + (f"; one panel per value of {pn}" if pn else "") + ". Grey: no config. \"div.\": configs in the "
            "cell that diverged (their accuracy is included).")
    if not annotate:
        text += " Too many cells to annotate."
    return _png(fig), text



def fig_boundaries(result, data, ranked: list[Group], col: str) -> tuple[str, str]:
    nb = min(N_BOUNDARY, math.ceil(len(ranked) / 2))
    best = ranked[:nb]
    worst = ranked[nb:][::-1][:N_BOUNDARY]  # worst first
    rows = [("best", best)] + ([("worst", worst)] if worst else [])
    x_all = np.concatenate([data.x_train, data.x_val]) if data.n_val else data.x_train
    lo, hi = x_all.min(axis=0), x_all.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    if data.num_features == 2:
        res = 140
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], res), np.linspace(lo[1], hi[1], res))
        grid = np.column_stack([gx.ravel(), gy.ravel()])
    else:
        res = 400
        grid = np.linspace(lo[0], hi[0], res).reshape(-1, 1)
    from matplotlib.colors import ListedColormap

    k = data.num_classes
    cols = _class_colors(k)
    bg = ListedColormap([_lighten(c, 0.55) for c in cols])
    ncol = max(len(r[1]) for r in rows)
    fig = _figure(FIG_W, (3.35 if data.num_features == 2 else 2.9) * len(rows) + 0.2)
    grid_axes = fig.subplots(len(rows), ncol, squeeze=False)
    rng = np.random.default_rng(0)
    acc = result.table[col].to_numpy(dtype=float)
    short = col.replace("final_", "").replace("_", " ")
    for r, (kind, gs) in enumerate(rows):
        for j in range(ncol):
            ax = grid_axes[r][j]
            if j >= len(gs):
                ax.set_visible(False)
                continue
            g = gs[j]
            i = g.members[0]
            c = result.configs[i]
            with np.errstate(all="ignore"):
                pred = np.asarray(result.predict(i, grid))
            pred = np.clip(pred, 0, k - 1)
            if data.num_features == 2:
                ax.imshow(pred.reshape(res, res), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]),
                          cmap=bg, vmin=-0.5, vmax=k - 0.5, aspect="auto", interpolation="nearest")
            else:
                ax.imshow(pred.reshape(1, res), origin="lower", extent=(lo[0], hi[0], -0.5, k - 0.5),
                          cmap=bg, vmin=-0.5, vmax=k - 0.5, aspect="auto", interpolation="nearest")
            _scatter(ax, data, data.x_train, data.y_train, rng, s=5)
            ax.set_xlim(lo[0], hi[0])
            if data.num_features == 2:
                ax.set_ylim(lo[1], hi[1])
            _setup_axes(ax, data)
            if j:
                ax.set_ylabel("")
            label = "\n".join(textwrap.wrap(c.short(), 30))
            seeds = f"; {len(g.members)} seeds: {g.mean:.3f}" if len(g.members) > 1 else ""
            div = " DIVERGED" if result.diverged[i] else ""
            ax.set_title(f"{kind} #{j + 1}: {label}\n{short} {acc[i]:.3f}{seeds}{div}", fontsize=8,
                         color="red" if div else "black")
    text = (f"Predicted class over a grid (background) with the training points on top, for the {len(best)} best "
            f"and {len(worst)} worst configs by seed-averaged {metric_words(col)} (worst first; diverged configs rank "
            f"last, as in the ranked table and the command line's); each panel shows the config's first seed, "
            f"titled with its label and its own {metric_words(col)} (and the mean over its seeds).")
    if data.num_features == 1:
        text += " One feature: the background band is the predicted class along the feature."
    return _png(fig), text
