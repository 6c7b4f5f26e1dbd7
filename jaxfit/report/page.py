"""One self-contained HTML report of a sweep directory.

    import jaxfit.report
    path = jaxfit.report.build("jaxfit-runs/20250101-120000")   # -> .../report.html

A sweep directory holds one subdirectory per dataset run, each a saved `jaxfit.SweepResult`
(recognised by its ``configs.json``); `build` also accepts one such result directory. The page is a
single file: every figure is a PNG drawn with matplotlib's Agg renderer and embedded as base64, the
CSS is inline, there is no JavaScript and no font, image or link outside the file, so it opens with
no network. Per dataset run it shows:

* the dataset (regenerated from the generator arguments stored in the result's meta, and used only
  when its fingerprint matches the one saved with the result);
* training and validation loss and validation accuracy against epoch for every config, faceted by
  the swept axes (the config fields that vary, ``seed`` excluded), at most `MAX_LINES` lines a panel;
* the final validation accuracy across the axes (a heatmap of the two axes that vary most, or a
  strip chart when one varies);
* the decision boundaries of the best and worst configs (1- and 2-feature data);
* the diverged configs (and the rule that fired), the diagnostics of `jaxfit.diagnose` (counts per
  flag, the flagged configs with their diagnosis), and the full table ranked by final validation
  accuracy (ties: final validation loss, lower first; diverged configs last).

The module imports matplotlib lazily and never touches pyplot's global state (figures are
`matplotlib.figure.Figure` objects rendered by Agg).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import regenerate
from ..errors import UserError
from .figures import (Group, fig_boundaries, fig_curves, fig_dataset, fig_final, fmt_value, metric_words,
                      ranked_groups, ranked_order, varying_axes)

__all__ = ["build", "build_checked", "find_runs"]

# --------------------------------------------------------------------------
# finding and loading runs
# --------------------------------------------------------------------------


def _is_result_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "configs.json")) or os.path.isfile(
        os.path.join(path, "manifest.json"))


def find_runs(sweep_dir: str | os.PathLike) -> list[str]:
    """The result directories under `sweep_dir`: itself when it is one, else its subdirectories that
    hold a ``configs.json`` (or ``manifest.json``), sorted by name."""
    sweep_dir = os.fspath(sweep_dir)
    if not os.path.isdir(sweep_dir):
        raise UserError(f"report: {sweep_dir!r} is not a directory")
    if os.path.isfile(os.path.join(sweep_dir, "configs.json")):
        return [sweep_dir]
    runs = [os.path.join(sweep_dir, d) for d in sorted(os.listdir(sweep_dir))
            if os.path.isdir(os.path.join(sweep_dir, d)) and _is_result_dir(os.path.join(sweep_dir, d))]
    if not runs:
        raise UserError(f"report: {sweep_dir!r} holds no saved SweepResult (no configs.json in it or "
                         "in any of its subdirectories)")
    return runs



def _diagnostics(result, axes, slug: str) -> str:
    """Counts per flag and the table of flagged configs with their diagnosis (jaxfit.diagnose)."""
    from ..diagnostics import FLAGS

    t = result.table
    counts = []
    for f in FLAGS:
        col = t[f] if f in t else pd.Series([pd.NA] * len(t))
        known = col.dropna()
        counts.append({"flag": f, "configs": int(known.astype(bool).sum()) if len(known) else 0,
                       "of": len(t), "not checked": len(t) - len(known)})
    out = ["<p>Flags from <code>jaxfit.diagnose</code> (thresholds documented in jaxfit/diagnostics.py), each "
           "computed from the config's own curves, final parameters and training data; 'not checked': the "
           "data-dependent flags when the data could not be regenerated.</p>",
           pd.DataFrame(counts).to_html(index=False, escape=True, table_id=f"diagnostics-counts-{slug}",
                                        classes="data", border=0)]
    flagged = [i for i in range(len(t)) if str(t["diagnosis"].iloc[i])]
    if not flagged:
        out.append(f'<p class="none" id="diagnostics-{slug}">no config flagged</p>')
        return "\n".join(out)
    rows = []
    for i in flagged:
        c = result.configs[i]
        row: dict[str, Any] = {"config": int(i), "label": c.short()}
        row["flags"] = ", ".join(f for f in FLAGS if f in t and not pd.isna(t[f].iloc[i]) and bool(t[f].iloc[i]))
        be = int(t["best_epoch"].iloc[i])
        row["best epoch"] = "" if be < 0 else be + 1
        row["diagnosis"] = str(t["diagnosis"].iloc[i])
        rows.append(row)
    out.append(f"<p>{len(flagged)} of {len(t)} configs flagged. Best epoch: the epoch (from 1) of the best "
               "validation accuracy.</p>")
    out.append('<div class="scroll">' + pd.DataFrame(rows).to_html(
        index=False, escape=True, table_id=f"diagnostics-{slug}", classes="data", border=0) + "</div>")
    return "\n".join(out)


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


def _last_finite(curve: np.ndarray):
    ok = np.nonzero(np.isfinite(curve))[0]
    if ok.size == 0:
        return math.nan, None
    return float(curve[ok[-1]]), int(ok[-1]) + 1


def _diverged_table(result, axes, table_id: str) -> str:
    idx = np.nonzero(result.diverged)[0]
    if idx.size == 0:
        return f'<p class="none" id="{table_id}">none diverged</p>'
    rows = []
    for i in idx:
        c = result.configs[i]
        loss, ep = _last_finite(result.curves["train_loss"][i, : c.epochs])
        row = {"config": int(i), "label": c.short()}
        for n, _ in axes:
            row[n] = fmt_value(n, getattr(c, n))
        row["seed"] = c.seed
        row["diverged at epoch"] = int(result.diverged_epoch[i]) + 1
        row["rule"] = result.diverged_rule[i] if hasattr(result, "diverged_rule") else "nonfinite"
        row["last finite training loss"] = "none (non-finite from epoch 1)" if ep is None else f"{loss:.6g}"
        row["at epoch"] = "" if ep is None else ep
        rows.append(row)
    df = pd.DataFrame(rows)
    return (f"<p>{idx.size} of {len(result)} configs diverged. Rules (jaxfit.results): nonfinite (a training loss "
            "or a final parameter NaN or inf), bce_clamp (BCELoss pinned at its clamp), loss_blowup (final "
            "training loss above 100 x the chance loss), param_blowup (a final |parameter| above 1e6). Epochs "
            "count from 1.</p>"
            + df.to_html(index=False, escape=True, table_id=table_id, classes="data", border=0))


def _ranked_table(result, axes, table_id: str, groups: list[Group], col: str) -> str:
    t = result.table
    order = ranked_order(result, groups, col)
    metric_cols = ["final_val_acc", "final_val_loss", "final_train_acc", "final_train_loss", "best_val_acc",
                   "best_val_loss"]
    rows = []
    for rank, i in enumerate(order, 1):
        c = result.configs[i]
        row: dict[str, Any] = {"rank": rank, "config": int(i)}
        for n, _ in axes:
            row[n] = fmt_value(n, getattr(c, n))
        row["seed"] = c.seed
        for m in metric_cols:
            row[m] = float(t[m].iloc[i])
        row["diverged"] = "yes" if bool(t["diverged"].iloc[i]) else ""
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.to_html(index=False, escape=True, table_id=table_id, classes="data ranked", border=0,
                      float_format=lambda v: f"{v:.4f}", na_rep="NaN")


# --------------------------------------------------------------------------
# page
# --------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; }
main { max-width: 1220px; margin: 0 auto; padding: 16px 20px 60px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 34px 0 8px; padding-top: 10px; border-top: 2px solid #ddd; }
h3 { font-size: 16px; margin: 22px 0 6px; }
p, li { font-size: 14px; line-height: 1.45; }
.meta { font-size: 13px; border-collapse: collapse; margin: 6px 0 10px; }
.meta th { text-align: left; padding: 2px 14px 2px 0; color: #555; font-weight: 600; vertical-align: top; }
.meta td { padding: 2px 0; }
figure { margin: 6px 0 14px; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; max-width: 1150px; }
.note { font-size: 13px; background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; }
.none { font-size: 14px; color: #2e7d32; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid #ddd; }
table.data { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: 3px 7px; border-bottom: 1px solid #eee; text-align: right;
                               white-space: nowrap; }
table.data thead th { position: sticky; top: 0; background: #f0f0f0; border-bottom: 1px solid #ccc; }
table.data tbody tr:nth-child(even) { background: #fafafa; }
nav ul { margin: 4px 0; padding-left: 20px; }
code { font-size: 12.5px; }
"""


def _img(fig_id: str, alt: str, b64: str, caption: str) -> str:
    return (f'<figure><img id="{html.escape(fig_id)}" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _meta_rows(rows: list[tuple[str, str]]) -> str:
    return ('<table class="meta">' + "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")


def _safe_figure(fn, *args):
    try:
        return fn(*args), None
    except Exception as e:  # a broken figure should not cost the rest of the page
        return None, f"this figure could not be drawn ({type(e).__name__}: {e})"


def _run_section(path: str, slug: str) -> tuple[str, dict]:
    from ..results import SweepResult

    result = SweepResult.load(path)
    meta = result.meta
    ds = meta.get("dataset", {})
    name = ds.get("name", os.path.basename(path))
    configs = result.configs
    axes = varying_axes(configs)
    data, data_note = regenerate(ds)
    if data is None:
        data_note += "; the data and decision-boundary figures are left out"
    ranked, rank_col, rank_note = ranked_groups(result)
    groups = ranked
    n_div = int(result.diverged.sum())
    out = [f'<section id="run-{slug}"><h2>{html.escape(name)}</h2>']

    env = meta.get("environment", {})
    best_g = ranked[0] if ranked else None
    rows = [
        ("directory", os.path.abspath(path)),
        ("dataset", f"{name}: {ds.get('n_train', '?')} training / {ds.get('n_val', '?')} validation points, "
                    f"{ds.get('num_features', '?')} feature(s), {ds.get('num_classes', '?')} classes"
                    + (f"; generator arguments {json.dumps(ds.get('meta'))}" if ds.get("meta") else "")),
        ("configs", f"{len(configs)} ({len(groups)} distinct up to the seed), {n_div} diverged"),
        ("swept axes", "; ".join(f"{n}: {', '.join(fmt_value(n, v) for v in vals)}" for n, vals in axes)
         + (f"; seed: {len({c.seed for c in configs})} values" if len({c.seed for c in configs}) > 1 else "")
         if axes or len({c.seed for c in configs}) > 1 else "none (a single config)"),
    ]
    if best_g is not None and math.isfinite(best_g.mean):
        c = configs[best_g.members[0]].replace(seed=0)
        rows.append(("best (seed-averaged)",
                     f"{' '.join(c.short().split(' ')[:-1])}: {metric_words(rank_col)} {best_g.mean:.4f}"
                     + (f" ± {best_g.sd:.4f} (sd over {len(best_g.members)} seeds)"
                        if len(best_g.members) > 1 and math.isfinite(best_g.sd) else "")
                     + (" (diverged)" if result.diverged[best_g.members].any() else "")))
    if rank_note:
        rows.append(("ranking", rank_note))
    pr = meta.get("prune")
    if pr:
        hb = pr.get("kind") == "hyperband"
        rows.append(("Hyperband" if hb else "successive halving",
                     (f"{max(pr['bracket']) + 1} brackets of successive halving (configs per bracket: "
                      + ", ".join(str(pr["bracket"].count(k)) for k in range(max(pr["bracket"]) + 1))
                      + f", groups shuffled with seed {pr.get('seed', 0)}) " if hb and pr.get("bracket") else "")
                     + f"on {pr['metric']} (min_epochs {pr['min_epochs']}, eta {pr['eta']}, averaged over "
                     f"{', '.join(pr['group_by']) or 'nothing'}): "
                     + ("; ".join(f"at epoch {r['epoch']} {r['kept']} of {r['ranked']} trained on" for r in pr["rungs"])
                        or "no rung below the last epoch")
                     + f"; {sum(pr['pruned'])} configs stopped early, {meta.get('model_steps_trained', 0):,} of "
                       f"{meta.get('model_steps', 0):,} model-steps trained (stopped groups rank below those "
                       "trained further)"))
    se = meta.get("search")
    if se:
        rounds = se.get("rounds", [])
        rows.append(("model-based search",
                     f"{sum(r['trials'] for r in rounds)} trials ({se.get('sampler')} sampler, rounds of "
                     f"{se.get('batch')}, {se.get('seeds')} seed(s) each), told the seed-averaged {se.get('metric')}; "
                     f"{len(configs)} configs trained; best after each round: "
                     + ", ".join(f"{r['best']:.4f}" for r in rounds)
                     + f"; sampler {se.get('ask_s', 0):.1f} s, training {se.get('train_s', 0):.1f} s"))
    if "date" in meta:
        rows.append(("trained", str(meta["date"])))
    if env:
        rows.append(("devices", f"{env.get('n_devices', '?')} x {env.get('platform', '?')} "
                                f"({env.get('device', '?')}), {env.get('machine', '')}, "
                                f"{env.get('cpu_count', '?')} CPU cores"))
        rows.append(("versions", ", ".join(f"{k} {env[k]}" for k in ("jaxfit", "jax", "numpy", "python")
                                            if k in env)))
    if "wall_s" in meta:
        rows.append(("time", f"{meta['wall_s']:.1f} s wall ({meta.get('compile_s', 0):.1f} s compile, "
                             f"{meta.get('run_s', 0):.1f} s run) in {meta.get('programs', '?')} program(s), "
                             f"{meta.get('model_steps', 0):,} model-steps"))
    out.append(_meta_rows(rows))

    # -- dataset
    out.append(f'<h3 id="{slug}-data">The dataset</h3>')
    out.append(f"<p>{html.escape(data_note)}.</p>" if data is not None else _note(data_note + "."))
    if data is not None:
        r, err = _safe_figure(fig_dataset, data)
        out.append(_img(f"fig-{slug}-dataset", f"{name}: dataset, points coloured by class", *r)
                   if r else _note(err))

    # -- curves
    out.append(f'<h3 id="{slug}-curves">Loss and accuracy curves</h3>')
    r, err = _safe_figure(fig_curves, result, axes)
    out.append(_img(f"fig-{slug}-curves", f"{name}: training and validation loss and validation accuracy per "
                                          "epoch", *r) if r else _note(err))

    # -- final accuracy
    out.append(f'<h3 id="{slug}-final">Final validation accuracy across the axes</h3>')
    r, err = _safe_figure(fig_final, result, axes)
    out.append(_img(f"fig-{slug}-final-acc", f"{name}: final validation accuracy across the swept axes", *r)
               if r else _note(err))

    # -- decision boundaries
    out.append(f'<h3 id="{slug}-boundaries">Decision boundaries of the best and worst configs</h3>')
    if data is None:
        out.append(_note("Left out: the data could not be regenerated (see the dataset section)."))
    elif data.num_features > 2:
        out.append(_note(f"Left out: decision boundaries are drawn for 1- and 2-feature data; this dataset has "
                         f"{data.num_features} features."))
    else:
        r, err = _safe_figure(fig_boundaries, result, data, ranked, rank_col)
        out.append(_img(f"fig-{slug}-boundaries", f"{name}: decision boundaries of the best and worst configs", *r)
                   if r else _note(err))

    # -- diverged
    out.append(f'<h3 id="{slug}-diverged">Diverged configs</h3>')
    out.append(_diverged_table(result, axes, f"diverged-{slug}"))

    # -- diagnostics
    out.append(f'<h3 id="{slug}-diagnostics">Diagnostics</h3>')
    try:
        out.append(_diagnostics(result, axes, slug))
    except Exception as e:  # a diagnostics bug must not cost the rest of the page
        out.append(_note(f"diagnostics failed: {type(e).__name__}: {e}"))

    # -- ranked table
    out.append(f'<h3 id="{slug}-ranked">All configs, ranked</h3>')
    out.append(f"<p>{len(configs)} configs in the order of <code>SweepResult.ranking</code> (the command line's "
               f"table): groups of seeds ranked by their mean {metric_words(rank_col)} (highest first), ties broken by "
               "the matching loss, groups with a diverged seed last; within a group, by the config's own value. "
               "Losses in nats (squared error for mse), accuracies as fractions.</p>")
    out.append(f'<div class="scroll">{_ranked_table(result, axes, f"ranked-{slug}", ranked, rank_col)}</div>')
    out.append("</section>")
    info = {"name": name, "slug": slug, "configs": len(configs), "diverged": n_div, "meta": meta}
    return "\n".join(out), info


def _slug(name: str, used: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"
    s, k = base, 2
    while s in used:
        s, k = f"{base}-{k}", k + 1
    used.add(s)
    return s


def build(sweep_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> str:
    """Write the sweep's HTML report and return its path.

    Args:
      sweep_dir: a sweep directory (one saved `SweepResult` per subdirectory) or one result directory.
      out: the file to write (default ``<sweep_dir>/report.html``).

    A result directory that cannot be loaded gets a note on the page (`build_checked` also returns
    them, for the command line's exit status); when none can be loaded, UserError.
    """
    return build_checked(sweep_dir, out)[0]


def build_checked(sweep_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[str, list]:
    """`build`, returning (the report's path, [(result directory, why it could not be loaded), ...])."""
    sweep_dir = os.fspath(sweep_dir)
    runs = find_runs(sweep_dir)
    out = os.fspath(out) if out is not None else os.path.join(sweep_dir, "report.html")
    used: set = set()
    sections, infos, failures = [], [], []
    for path in runs:
        slug = _slug(os.path.basename(os.path.normpath(path)), used)
        try:
            sec, info = _run_section(path, slug)
        except Exception as e:
            failures.append((path, f"{type(e).__name__}: {e}"))
            sections.append(f'<section id="run-{slug}"><h2>{html.escape(os.path.basename(path))}</h2>'
                            + _note(f"could not load {path}: {type(e).__name__}: {e}") + "</section>")
            continue
        sections.append(sec)
        infos.append(info)
    if not infos:
        raise UserError("report: no result could be loaded: "
                         + "; ".join(f"{p}: {e}" for p, e in failures))

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    dates = sorted({str(i["meta"].get("date")) for i in infos if i["meta"].get("date")})
    envs = [i["meta"].get("environment", {}) for i in infos]
    devs = sorted({f"{e.get('n_devices', '?')} x {e.get('platform', '?')} ({e.get('device', '?')})"
                   for e in envs if e})
    vers = sorted({", ".join(f"{k} {e[k]}" for k in ("jaxfit", "jax", "numpy", "python") if k in e)
                   for e in envs if e})
    title = f"jaxfit sweep report: {', '.join(i['name'] for i in infos)}"
    head_rows = [
        ("sweep", os.path.abspath(sweep_dir)),
        ("dataset runs", ", ".join(f"{i['name']} ({i['configs']} configs, {i['diverged']} diverged)" for i in infos)),
        ("configs", f"{sum(i['configs'] for i in infos)} in all"),
        ("trained", ", ".join(dates) or "unknown"),
        ("devices", "; ".join(devs) or "unknown"),
        ("versions", "; ".join(vers) or "unknown"),
        ("report written", now),
    ]
    toc = "<nav><ul>" + "".join(
        f'<li><a href="#run-{i["slug"]}">{html.escape(i["name"])}</a>: '
        + ", ".join(f'<a href="#{i["slug"]}-{s}">{lab}</a>' for s, lab in (
            ("data", "data"), ("curves", "curves"), ("final", "final accuracy"),
            ("boundaries", "decision boundaries"), ("diverged", "diverged"), ("diagnostics", "diagnostics"),
            ("ranked", "ranked table")))
        + "</li>" for i in infos) + "</ul></nav>"
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        _meta_rows(head_rows),
        toc,
        *sections,
        "</main></body></html>",
    ])
    from ..io import files as fsio

    fsio.write_text(out, page)  # atomic: a full disk leaves the old report (or none) and no temporary
    return out, failures
