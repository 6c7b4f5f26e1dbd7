"""Sweep files: a TOML spec -> datasets and configs, every table and key used or refused.

    [sweep]                      # optional
    name = "sum-mod-study"       # names the default output directory (else the file's name)
    metric = "val_acc"           # ranking metric of the printed table
    top = 10
    eval_every = 1               # evaluate every k epochs (and at each config's last); jaxfit.sweep's
    eval_rows = 5000             # evaluate on at most this many fixed rows of each split (last epoch: all)
    executor = "ray"             # train the chunks on a Ray cluster (jaxfit.sweep's executor; --ray on the command line)

    [prune]                      # optional: successive halving (jaxfit.Halving; --prune on the command line)
    kind = "halving"             # or "hyperband" (jaxfit.Hyperband: brackets of halving; seed = its shuffle)
    metric = "val_loss"          # ranked at each rung, seed-averaged
    min_epochs = 1               # rungs at min_epochs * eta^k epochs
    eta = 3                      # keep the best 1/eta of the settings at each rung
    group_by = ["seed"]          # configs equal but for these fields live or die together

    [[data]]                     # a built-in generator; any argument may be a list: an axis
    name = "sum_mod"
    n = [2000, 20000]
    seed = 0

    [[data]]                     # or the user's own file: CSV / Parquet (a label column) or npz (arrays)
    file = "points.csv"          # relative to the spec file
    label = "y"                  # the label column (npz: the label array's name, default "y")
    features = ["x0", "x1"]      # optional (default: every other column; npz: array "x")
    val_fraction = 0.2           # optional held-out share (seeded by `seed`, default 0)
    remap_labels = true          # optional: labels that are not 0..K-1 (say 3, 7, 9) mapped to 0..K-1

    [grid]                       # fixed fields are scalars, axes are lists; widths are lists of lists:
    hidden = [[16], [64, 64]]    # two configs (one layer of 16; two of 64). hidden = [64, 64] is refused.
    lr = [0.001, 0.01]
    seed = [0, 1, 2]
    # or [[grid]] tables: conditional sub-grids (each its own product), as jaxfit.grid([...])

    [sample]                     # or a random search, as jaxfit.sample
    count = 50
    seed = 0
    lr = { log_uniform = [1e-4, 1e-1] }
    dropout = { uniform = [0.0, 0.5] }
    epochs = { int_uniform = [10, 40] }
    activation = { choice = ["relu", "tanh"] }
    hidden = { choice = [[16], [64, 64]] }

    [search]                     # or a model-based search, as jaxfit.search (Optuna: pip install -e ".[search]")
    trials = 256                 # trials in all, asked and trained `batch` at a time
    batch = 64
    startup = 16                 # optional: the first round's trials (default: batch)
    sampler = "tpe"              # "tpe" (default), "random" or "qmc"
    seed = 0                     # the sampler's seed
    seeds = 2                    # each trial trained at seeds 0..seeds-1, told their mean
    metric = "val_acc"           # what the trials are told (as jaxfit.search's metric)
    lr = { log_uniform = [1e-4, 1e-1] }   # the space: distributions as in [sample], or fixed values
    hidden = { choice = [[16], [64, 64]] }

Errors are ValueErrors whose message starts with "<file>:<line>:" and names the table or key, with
the nearest valid name for a typo.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import config as cfgmod
from .config import Config
from .datasets import DATASETS, Dataset
from .errors import UserError

TOP_TABLES = ("sweep", "data", "grid", "sample", "search", "prune")
SEARCH_KEYS = ("trials", "batch", "startup", "sampler", "seed", "seeds", "metric")  # the rest of [search] is the space
PRUNE_KEYS = ("kind", "metric", "min_epochs", "eta", "group_by", "seed")
PRUNE_KINDS = ("halving", "hyperband")
SWEEP_KEYS = ("name", "metric", "top", "eval_every", "eval_rows", "executor")
FILE_KEYS = ("file", "label", "features", "val_fraction", "seed", "name", "remap_labels")
DISTRIBUTIONS = ("log_uniform", "uniform", "int_uniform", "choice")
SMOKE = {"epochs": 2, "seeds": 1, "n": 200, "configs": 8}


@dataclass
class DataRun:
    """One dataset of a sweep: a generator with its arguments, or a user's file."""

    label: str  # directory name of its results, e.g. "sum_mod-n2000-seed0"
    generator: str | None
    args: dict[str, Any]
    file: dict[str, Any] | None = None

    def load(self) -> Dataset:
        if self.generator is not None:
            return DATASETS[self.generator](**self.args)
        return _load_file(**self.file)

    def columns(self) -> dict[str, Any]:
        """This run's dataset arguments as table columns."""
        cols: dict[str, Any] = {"data": self.generator or os.path.basename(self.file["file"])}
        for k, v in (self.args if self.generator else {}).items():
            cols[f"data_{k}"] = v
        return cols


@dataclass
class SweepSpec:
    path: str | None
    text: str
    title: str
    data: list[DataRun]
    configs: list[Config]
    settings: dict[str, Any] = field(default_factory=dict)
    prune_table: dict[str, Any] | None = None  # [prune], or the command line's --prune options
    # [search]: {"trials", "batch", "sampler", "seed", "seeds", "metric", "space"}; `configs` then holds one
    # round drawn at random from the space (for the plan, the estimate and the data checks)
    search: dict[str, Any] | None = None

    @property
    def prune(self):
        """The sweep's `jaxfit.Halving` / `jaxfit.Hyperband`, or None."""
        if not self.prune_table:
            return None
        return _pruner(self.prune_table)

    @property
    def evaluation(self) -> tuple[int, int | None]:
        """(eval_every, eval_rows) of the sweep: [sweep] eval_every / eval_rows, or the options'."""
        return int(self.settings.get("eval_every") or 1), self.settings.get("eval_rows") or None

    @property
    def digest(self) -> str:
        """A short hash of what the sweep trains (the spec's content and the options that change it)."""
        what = (self.text, [(d.generator, sorted(d.args.items()), d.file) for d in self.data],
                [c.to_dict() for c in self.configs])
        evaluation = self.evaluation
        blob = repr(what if evaluation == (1, None) else what + (evaluation,))
        if self.prune_table:
            blob += repr(sorted(self.prune.record().items()))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _where(path: str | None, text: str, key: str | None = None, table: str | None = None) -> str:
    """'<file>:<line>' of a key (or table header) in the spec text, as near as a text search finds it."""
    name = path or "<spec>"
    line = None
    lines = text.splitlines()
    start = 0
    if table is not None:
        pat = re.compile(r"^\s*\[+\s*" + re.escape(table) + r"\s*\]+")
        for i, ln in enumerate(lines):
            if pat.match(ln):
                line, start = i + 1, i
                break
    if key is not None:
        pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in list(range(start, len(lines))) + list(range(0, start)):
            if pat.match(lines[i]):
                line = i + 1
                break
    return f"{name}:{line}" if line else name


def _near(word: str, allowed) -> str:
    m = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def load_spec(path: str, **options) -> SweepSpec:
    """Read and check a spec file (see the module docstring); `options` as in `build_spec`."""
    import tomllib

    if not os.path.exists(path):
        raise UserError(f"{path}: no such spec file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a TOML spec file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: invalid TOML: {e}") from None
    return build_spec(doc, text=text, path=path, **options)


MAX_CONFIGS = 100_000  # a grid over this is refused before it is built (--no-limits to override)


def build_spec(doc: dict, *, text: str = "", path: str | None = None, epochs: int | None = None,
               seeds: int | None = None, n: int | None = None, smoke: bool = False,
               max_configs: int | None = MAX_CONFIGS) -> SweepSpec:
    """Datasets and configs from a parsed spec. `epochs` / `seeds` / `n` override every config's
    epochs, seeds and every generator's n; `smoke` runs any spec on a tiny budget (2 epochs, 1 seed,
    200 points, at most 8 configs)."""
    where = lambda key=None, table=None: _where(path, text, key, table)  # noqa: E731
    for k in doc:
        if k not in TOP_TABLES:
            raise UserError(f"{where(table=k) if isinstance(doc[k], dict) else where(k)}: unknown table or key "
                             f"{k!r}{_near(k, TOP_TABLES)}; a spec has [sweep], [[data]], [grid] (or [[grid]]) "
                             "and [sample]")
    settings = doc.get("sweep", {})
    _check_table(settings, "sweep", SWEEP_KEYS, where('sweep'), lambda k: where(k, "sweep"))
    given = [t for t in ("grid", "sample", "search") if t in doc]
    if len(given) > 1:
        raise UserError(f"{where(table=given[1])}: a spec has one of [grid], [sample] or [search], not "
                        f"{' and '.join(f'[{t}]' for t in given)}")
    if not given:
        raise UserError(f"{path or '<spec>'}: no [grid], [sample] or [search] table: nothing to train")
    if n is not None and any("n" in d for d in _as_list(doc.get("data", [])) if isinstance(d, dict)):
        raise UserError(f"{where('n', 'data')}: --n would override the spec's own n in [[data]]: "
                         "change it in the spec instead")

    data = _data_runs(doc.get("data"), where, path, n=n, smoke=smoke)
    search = None
    if "grid" in doc:
        configs = _grid(doc["grid"], where, epochs=epochs, seeds=seeds, smoke=smoke, max_configs=max_configs)
    elif "sample" in doc:
        configs = _sample(doc["sample"], where, epochs=epochs, seeds=seeds, smoke=smoke, max_configs=max_configs)
    else:
        search, configs = _search(doc["search"], where, epochs=epochs, seeds=seeds, smoke=smoke)
    if smoke:
        configs = configs[: SMOKE["configs"]]
    for k in ("eval_every", "eval_rows"):
        v = settings.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"{where(k, 'sweep')}: {k}={v!r} must be a positive integer")
    if settings.get("executor", "local") not in ("local", "ray"):
        raise UserError(f"{where('executor', 'sweep')}: executor={settings['executor']!r} is invalid: allowed values "
                        "are local, ray")
    prune = prune_table(doc.get("prune"), lambda key=None: where(key, "prune"), "[prune]")
    title = settings.get("name") or (os.path.splitext(os.path.basename(path))[0] if path else "sweep")
    if not isinstance(title, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", title):
        raise UserError(f"{where('name', 'sweep')}: name={title!r} must be letters, digits, '.', '_' or '-'")
    return SweepSpec(path, text, title, data, configs, dict(settings), prune, search)


def _check_table(t, name: str, keys: tuple, where_table: str, where_key) -> None:
    """A spec's [name] is a table whose every key is one of `keys` (else a UserError at its place)."""
    if not isinstance(t, dict):
        raise UserError(f"{where_table}: '{name}' must be a table [{name}]")
    for k in t:
        if k not in keys:
            raise UserError(f"{where_key(k)}: unknown key {k!r} in [{name}]{_near(k, keys)}; "
                             f"allowed: {', '.join(keys)}")


def prune_table(t, where, label: str | None = None) -> dict | None:
    """A checked [prune] table (None: no pruning): every key known, and a valid jaxfit.Halving.
    `where(key=None)`: the place errors name; `label`: what a Halving error is prefixed with
    (the table's name in a spec; None on the command line, where `where` names the option)."""
    if t is None:
        return None
    _check_table(t, "prune", PRUNE_KEYS, where(), where)
    kind = t.get("kind", "halving")
    if kind not in PRUNE_KINDS:
        raise UserError(f"{where('kind')}: kind={kind!r} is invalid: allowed values are {', '.join(PRUNE_KINDS)}")
    out = {"kind": kind, **{k: (tuple(v) if k == "group_by" and isinstance(v, list) else v)
                            for k, v in t.items() if k != "kind"}}
    if "seed" in out and kind != "hyperband":
        raise UserError(f"{where('seed')}: seed is Hyperband's (the shuffle of groups into brackets): "
                        "use kind = \"hyperband\" or drop it")
    try:
        _pruner(out)
    except UserError as e:
        raise UserError(f"{where()}: {label + ': ' if label else ''}{e}") from None
    return out


def _pruner(table: dict):
    from .engine.prune import Halving, Hyperband

    cls = Hyperband if table.get("kind") == "hyperband" else Halving
    return cls(**{k: v for k, v in table.items() if k != "kind"})


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _generator_params(name: str) -> list[str]:
    return [p for p in inspect.signature(DATASETS[name]).parameters]


def _data_runs(tables, where, path, *, n, smoke) -> list[DataRun]:
    if tables is None:
        raise UserError(f"{path or '<spec>'}: no [[data]] table: name at least one dataset "
                         f"(a generator: {', '.join(sorted(DATASETS))}, or file = \"...\")")
    tables = _as_list(tables)
    if not tables:
        raise UserError(f"{where('data')}: data = [] names no dataset")
    runs: list[DataRun] = []
    for t in tables:
        if not isinstance(t, dict):
            raise UserError(f"{where('data')}: each [[data]] entry must be a table, got {t!r}")
        if "file" in t:
            runs.append(_file_run(t, where, path))
            continue
        name = t.get("name")
        if name is None:
            raise UserError(f"{where(table='data')}: a [[data]] table needs name = one of "
                             f"{', '.join(sorted(DATASETS))}, or file = \"...\"")
        if name not in DATASETS:
            raise UserError(f"{where('name', 'data')}: unknown dataset {name!r}{_near(str(name), DATASETS)}; "
                             f"built-in: {', '.join(sorted(DATASETS))} (or file = \"...\" for your own)")
        allowed = _generator_params(name)
        args = {k: v for k, v in t.items() if k != "name"}
        for k in args:
            if k not in allowed:
                raise UserError(f"{where(k, 'data')}: unknown argument {k!r} for dataset {name!r}"
                                 f"{_near(k, allowed)}; its arguments are {', '.join(allowed)}")
        if n is not None:
            args["n"] = n
        if smoke and "n" in allowed:
            args["n"] = min([SMOKE["n"]] + [v for v in _as_list(args.get("n", SMOKE["n"])) if isinstance(v, int)])
        axes = {k: v for k, v in args.items() if isinstance(v, list)}
        for k, v in axes.items():
            if not v:
                raise UserError(f"{where(k, 'data')}: axis {k!r} of dataset {name!r} is empty")
        fixed = {k: v for k, v in args.items() if k not in axes}
        for combo in itertools.product(*axes.values()):
            a = {**fixed, **dict(zip(axes, combo))}
            label = "-".join([name] + [f"{k}{a[k]}" for k in axes])  # the axes name a run
            runs.append(DataRun(_safe(label), name, a))
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # the same generator twice with other fixed arguments: name them all
        for r in runs:
            if r.generator is not None:
                r.label = _safe("-".join([r.generator] + [f"{k}{v}" for k, v in r.args.items()]))
        labels = [r.label for r in runs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"{where(table='data')}: dataset(s) {dup} appear twice")
    return runs


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:120]


def _file_run(t: dict, where, path) -> DataRun:
    for k in t:
        if k not in FILE_KEYS:
            raise UserError(f"{where(k, 'data')}: unknown key {k!r} for a file dataset{_near(k, FILE_KEYS)}; "
                             f"allowed: {', '.join(FILE_KEYS)}")
    f = t["file"]
    if not isinstance(f, str):
        raise UserError(f"{where('file', 'data')}: file must be a path string")
    full = f if os.path.isabs(f) or path is None else os.path.join(os.path.dirname(os.path.abspath(path)), f)
    if not os.path.isfile(full):
        raise UserError(f"{where('file', 'data')}: data file {f!r} not found ({full})")
    ext = os.path.splitext(full)[1].lower()
    if ext not in (".csv", ".parquet", ".npz"):
        raise UserError(f"{where('file', 'data')}: {f!r}: unsupported file type {ext or '(none)'}; use .csv, "
                         ".parquet or .npz")
    if ext != ".npz" and "label" not in t:
        raise UserError(f"{where('file', 'data')}: {f!r}: name the label column with label = \"...\"")
    spec = {"file": full, "label": t.get("label", "y"), "features": t.get("features"),
            "val_fraction": t.get("val_fraction", 0.0), "seed": t.get("seed", 0),
            "name": t.get("name") or os.path.splitext(os.path.basename(full))[0],
            "remap_labels": t.get("remap_labels", False)}
    if not isinstance(spec["remap_labels"], bool):
        raise UserError(f"{where('remap_labels', 'data')}: remap_labels must be true or false")
    try:
        ds = _load_file(**spec)
    except ValueError as e:
        raise UserError(f"{where('file', 'data')}: {e}") from None
    return DataRun(_safe(spec["name"]), None, {"n": ds.n_train + ds.n_val}, spec)


def _load_file(file, label, features, val_fraction, seed, name, remap_labels=False) -> Dataset:
    import numpy as np

    from .datasets import from_arrays

    ext = os.path.splitext(file)[1].lower()
    try:
        if ext == ".npz":
            with np.load(file) as z:
                fx = features if isinstance(features, str) else "x"
                if fx not in z.files or label not in z.files:
                    raise UserError(f"{file}: needs arrays {fx!r} and {label!r}; it has {sorted(z.files)}")
                x, y = z[fx], z[label]
        else:
            import pandas as pd

            df = pd.read_csv(file) if ext == ".csv" else pd.read_parquet(file)
            if label not in df.columns:
                raise UserError(f"{file}: no label column {label!r}{_near(label, df.columns)}; columns: "
                                 f"{', '.join(map(str, df.columns))}")
            cols = features or [c for c in df.columns if c != label]
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise UserError(f"{file}: no feature column(s) {missing}; columns: {', '.join(map(str, df.columns))}")
            x, y = df[cols].to_numpy(), df[label].to_numpy()
    except (OSError, KeyError) as e:
        raise UserError(f"{file}: cannot read it: {e}") from None
    except ValueError:
        raise
    except Exception as e:  # a parser's own error (a corrupt Parquet file, a bad CSV)
        raise UserError(f"{file}: cannot read it: {type(e).__name__}: {e}") from None
    return from_arrays(x, y, name=name, val_fraction=float(val_fraction), seed=int(seed), remap_labels=remap_labels)


def _fix_values(table: dict, where, tname: str) -> dict:
    """TOML has no tuples: betas = [0.9, 0.999] is one value (a list of lists is an axis of them)."""
    out = dict(table)
    if "betas" in out and isinstance(out["betas"], list) and out["betas"] and all(
            isinstance(b, (int, float)) for b in out["betas"]):
        out["betas"] = tuple(out["betas"])
    for k, v in out.items():
        if isinstance(v, dict):
            raise UserError(f"{where(k, tname)}: {k} = {{...}}: a table is not a value here")
    return out


def _grid(g, where, *, epochs, seeds, smoke, max_configs=None) -> list[Config]:
    subs = _as_list(g)
    if not subs or not all(isinstance(s, dict) for s in subs):
        raise UserError(f"{where(table='grid')}: [grid] must be a table or [[grid]] tables")
    out = []
    for s in subs:
        for k in s:
            if k not in cfgmod.FIELD_NAMES:
                raise UserError(f"{where(k, 'grid')}: unknown Config field {k!r}{_near(k, cfgmod.FIELD_NAMES)}")
        s = _fix_values(s, where, "grid")
        if epochs is not None:
            s["epochs"] = epochs
        if seeds is not None:
            s["seed"] = list(range(seeds))
        if smoke:
            s["epochs"] = min([SMOKE["epochs"]] + [e for e in _as_list(s.get("epochs", Config.epochs))
                                                    if isinstance(e, int)])
            s["seed"] = [0]
            s = {k: (v[:2] if isinstance(v, list) and k != "hidden" else v) for k, v in s.items()}
        size = 1
        for v in s.values():
            size *= len(v) if isinstance(v, list) else 1
        if max_configs is not None and size > max_configs:
            raise UserError(f"{where(table='grid')}: the grid would build {size:,} configs, over the limit of "
                             f"{max_configs:,} (refused before building them): shrink it, or pass --no-limits")
        try:
            out.extend(cfgmod.grid(s))
        except ValueError as e:
            key = next((k for k in s if repr(k) in str(e) or f"{k}=" in str(e)), None)
            raise UserError(f"{where(key, 'grid')}: {e}") from None
    return cfgmod._dedupe(out)


def _sample(t, where, *, epochs, seeds, smoke, max_configs=None) -> list[Config]:
    if not isinstance(t, dict):
        raise UserError(f"{where(table='sample')}: [sample] must be a table")
    if "count" not in t:
        raise UserError(f"{where(table='sample')}: [sample] needs count = <configs to draw>")
    count, seed = t["count"], t.get("seed", 0)
    dists = _distributions(t, where, "sample", ("count", "seed"))
    if epochs is not None:
        dists["epochs"] = epochs
    if max_configs is not None and isinstance(count, int) and count > max_configs:
        raise UserError(f"{where('count', 'sample')}: count={count:,} is over the limit of {max_configs:,}: "
                         "lower it, or pass --no-limits")
    if smoke:
        dists["epochs"] = SMOKE["epochs"]
        count = min(int(count), SMOKE["configs"]) if isinstance(count, int) else count
    try:
        configs = cfgmod.sample(count, seed=seed, **dists)
    except ValueError as e:
        raise UserError(f"{where(table='sample')}: {e}") from None
    if seeds is not None and not smoke:
        configs = cfgmod._dedupe(c.replace(seed=s) for c in configs for s in range(seeds))
    return configs


def _distributions(t: dict, where, tname: str, skip: tuple) -> dict[str, Any]:
    """The keys of [tname] outside `skip` as jaxfit.sample's distributions or values."""
    dists: dict[str, Any] = {}
    for k, v in t.items():
        if k in skip:
            continue
        if k not in cfgmod.FIELD_NAMES:
            raise UserError(f"{where(k, tname)}: unknown Config field {k!r}{_near(k, cfgmod.FIELD_NAMES)}")
        if isinstance(v, dict):
            if len(v) != 1 or next(iter(v)) not in DISTRIBUTIONS:
                raise UserError(f"{where(k, tname)}: {k} = {v!r}: a distribution is one of "
                                 + ", ".join(f"{{ {d} = [...] }}" for d in DISTRIBUTIONS))
            kind, args = next(iter(v.items()))
            try:
                if kind == "choice":
                    if not isinstance(args, list) or not args:
                        raise UserError("choice needs a non-empty list")
                    dists[k] = [tuple(a) if isinstance(a, list) else a for a in args] if k in ("hidden", "betas") \
                        else list(args)
                else:
                    if not isinstance(args, list) or len(args) != 2:
                        raise UserError(f"{kind} needs [low, high]")
                    dists[k] = getattr(cfgmod, kind)(*args)
            except (TypeError, ValueError) as e:
                raise UserError(f"{where(k, tname)}: {k}: {e}") from None
        elif isinstance(v, list) and k not in ("betas",):
            raise UserError(f"{where(k, tname)}: {k} = {v!r}: in [{tname}] write {k} = {{ choice = {v!r} }} "
                             "to draw from a list")
        else:
            dists[k] = tuple(v) if isinstance(v, list) else v
    return dists


def _search(t, where, *, epochs, seeds, smoke) -> tuple[dict, list[Config]]:
    """[search]: the search's settings and space, checked as jaxfit.search checks them, and one
    round of configs drawn from the space (the plan and the estimate show a round)."""
    if not isinstance(t, dict):
        raise UserError(f"{where(table='search')}: [search] must be a table")
    if "trials" not in t:
        raise UserError(f"{where(table='search')}: [search] needs trials = <trials in all>")
    out = {"trials": t["trials"], "batch": t.get("batch", 64), "startup": t.get("startup"),
           "sampler": t.get("sampler", "tpe"),
           "seed": t.get("seed", 0), "seeds": t.get("seeds", 1), "metric": t.get("metric", "val_acc")}
    space = _distributions(t, where, "search", SEARCH_KEYS)
    if epochs is not None:
        space["epochs"] = epochs
    if seeds is not None:
        out["seeds"] = seeds
    if smoke:
        space["epochs"] = SMOKE["epochs"]
        out.update(seeds=1, trials=min(out["trials"], SMOKE["configs"]) if isinstance(out["trials"], int)
                   else out["trials"], batch=min(out["batch"], SMOKE["configs"] // 2)
                   if isinstance(out["batch"], int) else out["batch"])
    from .study import check_search

    try:
        check_search(space, **{k: out[k] for k in ("trials", "batch", "seeds", "sampler", "metric")})
    except UserError as e:
        key = next((k for k in list(SEARCH_KEYS) + list(space) if f"{k}=" in str(e) or f"{k}:" in str(e)), None)
        raise UserError(f"{where(key, 'search') if key else where(table='search')}: {e}") from None
    v = out["startup"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise UserError(f"{where('startup', 'search')}: startup={v!r} must be a positive integer (the first round's "
                        "trials)")
    if smoke and v is not None:
        out["startup"] = min(v, out["batch"])
    out["space"] = space
    n = out["batch"] if isinstance(out["batch"], int) else 1
    draw = {k: v for k, v in space.items()}
    configs = cfgmod.sample(n, seed=out["seed"], **draw)
    configs = cfgmod._dedupe(c.replace(seed=s) for c in configs for s in range(out["seeds"]))
    return out, configs


def builtin_spec(grid: dict, datasets, *, n=None, epochs=None, seeds=None, smoke=False, title="default",
                 max_configs=MAX_CONFIGS) -> SweepSpec:
    """The command line's own sweeps (no file) as a SweepSpec, through the same checks."""
    doc = {"sweep": {"name": title}, "data": [{"name": d, **({"n": n} if n is not None else {})} for d in datasets],
           "grid": {k: ([list(h) for h in v] if k == "hidden" else (list(v) if isinstance(v, range) else v))
                    for k, v in grid.items()}}
    return build_spec(doc, text=repr(doc), path=None, epochs=epochs, seeds=seeds, smoke=smoke, max_configs=max_configs)
