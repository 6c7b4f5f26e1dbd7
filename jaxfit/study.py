"""Batched model-based search: Optuna proposes a batch of trials, jaxfit trains the batch together.

    space = {"hidden": [(16,), (64,), (64, 64)], "activation": ["relu", "tanh"],
             "lr": jaxfit.log_uniform(1e-4, 1e-1), "epochs": 20}
    found = jaxfit.search(data, space, trials=256, batch=64, directory="runs/search")
    found.best()            # the best trials, seed-averaged
    found.result            # a SweepResult of every config trained (table, curves, report, diagnostics)

Each round asks Optuna's sampler for `batch` trials (ask-and-tell; TPE keeps the trials asked and not
yet told as "constant liars", so one batch spreads out), turns every trial into `seeds` Configs, trains
the new ones in one `jaxfit.sweep` (its fused programs; successive halving with `prune=`), and tells
Optuna each trial's seed-averaged metric; a trial stopped by halving is told PRUNED after its rung
values were reported, a trial whose metric is NaN (diverged) FAIL. A trial that repeats a config
already trained (a categorical space has few) is told that config's value without training it again.

The named samplers are re-seeded at each round from (`seed`, round), so a round's proposals depend
only on the trials told before it: with `directory`, a search killed at any moment and run again with
the same arguments gives the same trials and numbers (the study is Optuna's journal file there, each
round's asked parameters are written before it trains, its chunks are checkpointed and its result
saved; trials asked but never told are marked FAIL and asked again with the same parameters).

Optuna is an optional dependency (`pip install -e ".[search]"`), imported only here.
"""

from __future__ import annotations

import ast
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from . import api
from .config import Config, IntUniform, LogUniform, Uniform, check_space, config_of, is_choices
from .datasets import Dataset
from .engine.prune import Halving
from .errors import UserError
from .io import files as fsio
from .io.lock import DirLock
from .results import SweepResult

SAMPLERS = ("tpe", "random", "qmc")
METRICS = {"val_acc": "maximize", "val_loss": "minimize", "train_acc": "maximize", "train_loss": "minimize",
           "full_train_loss": "minimize", "best_val_acc": "maximize", "best_val_loss": "minimize"}
TUPLE_FIELDS = ("hidden", "betas")  # values that are tuples: Optuna's categorical choices hold their repr
SWEEP_OPTIONS = ("chunk_size", "memory_budget", "matmul_precision", "fuse", "segment", "eval_every", "eval_rows",
                 "executor", "ray_address")
REFUSED = ("params", "model_states", "batch_orders", "dropout_masks", "model", "on_chunk", "record_steps",
           "checkpoint_dir")
SEARCH_FILE = "search.json"
STUDY_FILE = "study.journal"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("jaxfit.search needs Optuna: pip install -e \".[search]\" (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class Space:
    """A search space: Optuna distributions for the searched fields, values for the fixed ones."""

    distributions: dict[str, Any]
    fixed: dict[str, Any]

    def configs(self, params: Mapping[str, Any], seeds: int) -> list[Config]:
        """The configs of one trial's parameters: one per seed (0..seeds-1)."""
        values = {**self.fixed}
        for name, v in params.items():
            values[name] = ast.literal_eval(v) if name in TUPLE_FIELDS and isinstance(v, str) else v
        return [config_of({**values, "seed": s}) for s in range(seeds)]

    def describe(self) -> dict:
        return {"searched": {k: repr(d) for k, d in self.distributions.items()},
                "fixed": {k: repr(v) for k, v in self.fixed.items()}}


def make_space(space: Mapping[str, Any], where: str = "search") -> Space:
    """`space` (field -> jaxfit.log_uniform / uniform / int_uniform, a list of choices, an Optuna
    distribution, or a fixed value) as Optuna distributions; every choice and range end checked as a
    Config value before anything trains."""
    optuna = _optuna()
    D = optuna.distributions
    if not isinstance(space, Mapping) or not space:
        raise UserError(f"{where}: the space must be a non-empty dict of Config field -> distribution")
    if "seed" in space:
        raise UserError(f"{where}: 'seed' cannot be searched or fixed in the space: pass seeds=N (each trial is "
                        "trained at seeds 0..N-1 and told their mean)")
    space = check_space(space, where)
    dists, fixed = {}, {}
    for name, v in space.items():
        if isinstance(v, LogUniform):
            dists[name] = D.FloatDistribution(v.low, v.high, log=True)
        elif isinstance(v, Uniform):
            dists[name] = D.FloatDistribution(v.low, v.high)
        elif isinstance(v, IntUniform):
            dists[name] = D.IntDistribution(v.low, v.high)
        elif isinstance(v, D.BaseDistribution):
            dists[name] = v
        elif is_choices(v):
            choices = list(v)
            if not choices:
                raise UserError(f"{where}: {name}: the list of choices is empty")
            enc = [repr(tuple(c)) if name in TUPLE_FIELDS else c for c in choices]
            if len(set(map(repr, enc))) < len(enc):
                raise UserError(f"{where}: {name}: the choices {choices} repeat a value")
            dists[name] = D.CategoricalDistribution(enc)
        else:
            fixed[name] = v
    out = Space(dists, fixed)
    # Every choice and both ends of every range, each alone over the fixed values: a bad value is named now.
    for name, d in dists.items():
        ends = list(d.choices) if isinstance(d, D.CategoricalDistribution) else [d.low, d.high]
        for v in ends:
            try:
                out.configs({name: v}, 1)
            except (UserError, ValueError, TypeError) as e:
                raise UserError(f"{where}: {name}={v!r}: {e}") from None
    try:
        out.configs({}, 1)
    except (UserError, ValueError, TypeError) as e:
        raise UserError(f"{where}: the fixed values: {e}") from None
    return out


def _sampler(sampler, seed: int, batch: int):
    optuna = _optuna()
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                              n_startup_trials=min(batch, 10))
        if sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)


def check_search(space: Mapping[str, Any], *, trials, batch=64, seeds=1, sampler="tpe", metric="val_acc",
                 prune=None) -> Space:
    """The search's settings checked (a UserError naming the first bad one) and its space made."""
    for name, v in (("trials", trials), ("batch", batch), ("seeds", seeds)):
        api.positive_int(f"search: {name}", v, "need a positive integer")
    if metric not in METRICS:
        raise UserError(f"search: metric={metric!r} is invalid: allowed values are {', '.join(METRICS)}")
    optuna = _optuna()
    if not (sampler in SAMPLERS or isinstance(sampler, optuna.samplers.BaseSampler)):
        raise UserError(f"search: sampler={sampler!r} is invalid: allowed values are {', '.join(SAMPLERS)} or an "
                        "optuna.samplers.BaseSampler")
    if prune is not None and not isinstance(prune, Halving):
        raise UserError(f"search: prune={prune!r} is invalid: pass jaxfit.Halving(...) or None (jaxfit ranks each "
                        "rung of a batch itself: Optuna's pruners decide by report order inside a lockstep batch)")
    return make_space(space)


def _check_options(data, options) -> None:
    if not isinstance(data, Dataset):
        raise UserError(f"search: data must be a jaxfit Dataset, got {type(data).__name__}")
    bad = [k for k in options if k in REFUSED]
    if bad:
        raise UserError(f"search: {', '.join(bad)} cannot be passed to a search (the directory= holds its "
                        "checkpoints; params and replays belong to one sweep)")
    unknown = [k for k in options if k not in SWEEP_OPTIONS]
    if unknown:
        raise UserError(f"search: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(SWEEP_OPTIONS)}")
    api.check_options(options.get("chunk_size"), options.get("memory_budget"), options.get("segment"),
                       options.get("eval_every", 1), options.get("eval_rows"))


@dataclass
class SearchResult:
    """What `search` found: `result` (every config trained, in the order trained), `trials` (one row
    per trial: number, round, state, value, its parameters and the rows of `result` it used) and the
    Optuna `study`."""

    result: SweepResult
    trials: pd.DataFrame
    study: Any
    meta: dict = field(default_factory=dict)

    def best(self, k: int = 10) -> pd.DataFrame:
        """The k best completed trials by the metric (seed-averaged), best first."""
        done = self.trials[self.trials["state"] == "COMPLETE"]
        asc = METRICS[self.meta["metric"]] == "minimize"
        return done.sort_values(["value", "number"], ascending=[asc, True]).head(k)

    @property
    def best_config(self) -> Config:
        """The seed-0 config of the best completed trial."""
        rows = self.best(1)
        if rows.empty:
            raise UserError("search: no trial completed (every one was pruned or failed)")
        return self.result.configs[rows.iloc[0]["rows"][0]]

    def best_so_far(self) -> np.ndarray:
        """After each trial (in trial order), the best value told so far (NaN before the first)."""
        v = self.trials.sort_values("number")["value"].to_numpy(dtype=float)
        v = np.where(self.trials.sort_values("number")["state"].to_numpy() == "COMPLETE", v, np.nan)
        sign = -1.0 if METRICS[self.meta["metric"]] == "maximize" else 1.0
        out = np.fmin.accumulate(np.where(np.isnan(v), np.inf, sign * v))
        return np.where(np.isinf(out), np.nan, sign * out)


def _objective(result: SweepResult, rows: list[int], metric: str) -> tuple[float, list[tuple[int, float]], bool]:
    """(seed-mean metric at the trial's last epoch, [(rung epoch, seed-mean metric)], pruned) of a trial
    from its rows of `result`."""
    col = metric if metric.startswith("best_") else f"final_{metric}"
    value = float(np.mean(result.table.loc[rows, col].to_numpy(dtype=float)))
    curve = metric.removeprefix("best_")
    stop = int(result.stopped_epoch[rows[0]])
    pruned = bool(stop < result.configs[rows[0]].epochs)
    rungs = [r["epoch"] for r in (result.meta.get("prune") or {}).get("rungs", []) if r["epoch"] <= stop]
    reports = [(e, float(np.mean(result.curves[curve][rows, e - 1]))) for e in sorted(set(rungs) | {stop})]
    return value, reports, pruned


def search(data: Dataset, space: Mapping[str, Any], *, trials: int, batch: int = 64, startup: int | None = None,
           sampler="tpe",
           metric: str = "val_acc", seeds: int = 1, prune: Halving | None = None, directory: str | None = None,
           seed: int = 0, progress: bool | Callable[[str], None] = False, **options) -> SearchResult:
    """Model-based search in batches (see the module docstring).

    Args:
      data: the Dataset every trial trains on.
      space: Config field -> `jaxfit.log_uniform(a, b)`, `uniform(a, b)`, `int_uniform(a, b)`, a list
        of choices (`hidden` as a list of width tuples), an `optuna.distributions` object, or a
        fixed value. `seed` is not in the space: see `seeds`.
      trials: trials to run in all (rounds of `batch`; a rerun with more trials continues a search).
      batch: trials asked per round and trained together.
      startup: trials of the first round (default `batch`): a model-based sampler knows nothing until
        trials are told, so a first round smaller than `batch` lets the second round already use a model.
      sampler: "tpe" (multivariate TPE, constant liar; default), "random", "qmc", or any
        optuna.samplers.BaseSampler (then re-seeding and an exact resume are the sampler's own affair).
      metric: what the trials are told (seed-averaged): final val_acc (default) / val_loss / train_acc /
        train_loss / full_train_loss, or best_val_acc / best_val_loss over the epochs.
      seeds: each trial trains at seeds 0..seeds-1, told their mean (halving keeps them together).
      prune: `jaxfit.Halving(...)` inside each round (rung values are reported to Optuna).
      directory: where the study (Optuna journal), each round's trials, checkpoints and results live,
        so that the same call resumes a killed search; one process at a time (a lock).
      seed: the sampler's seed. progress: True prints a line per round (or a callable taking it);
        the sweeps' own progress is shown too.
      **options: chunk_size, memory_budget, matmul_precision, fuse, segment, eval_every, eval_rows,
        executor, ray_address (as in `jaxfit.sweep`; executor="ray" trains each round on a Ray cluster).
    """
    _check_options(data, options)
    sp = check_search(space, trials=trials, batch=batch, seeds=seeds, sampler=sampler, metric=metric, prune=prune)
    api.positive_int("search: startup", startup, "need a positive integer (trials of the first round) or None")
    startup = startup or batch
    api.check_inputs(data, sp.configs({}, 1))  # the fixed values fit the data
    optuna = _optuna()
    log = progress if callable(progress) else (print if progress else (lambda *_: None))
    same = {k: repr(v) for k, v in options.items() if k not in ("executor", "ray_address")}  # where: not what
    record = {"space": sp.describe(), "metric": metric, "seeds": seeds, "batch": batch, "seed": seed,
              **({"startup": startup} if startup != batch else {}),
              "sampler": sampler if isinstance(sampler, str) else type(sampler).__name__,
              "prune": prune.record() if prune is not None else None, "options": same, "data": data.fingerprint()}
    lock = None
    if directory is not None:
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        lock = DirLock(directory)
        lock.acquire()
    try:
        if directory is not None:
            _same_search(directory, record)
        study = _study(optuna, directory, METRICS[metric], _sampler(sampler, seed, batch), log)
        return _rounds(data, sp, study, trials=trials, batch=batch, startup=startup, sampler=sampler, seed=seed,
                       metric=metric,
                       seeds=seeds, prune=prune, directory=directory, progress=bool(progress), log=log,
                       options=options, record=record)
    finally:
        if lock is not None:
            lock.release()


def _study(optuna, directory: str | None, direction: str, sampler, log):
    """The study: in memory, or Optuna's journal in `directory`. A journal that cannot be read (a disk
    fault, a hand edit) is set aside and the study rebuilt from the rounds saved beside it: each
    round's trials are asked again with their saved parameters and told their saved results."""
    def make(storage):
        return optuna.create_study(storage=storage, study_name="jaxfit", direction=direction, sampler=sampler,
                                   load_if_exists=True)

    if directory is None:
        return make(None)
    path = os.path.join(directory, STUDY_FILE)
    journal = lambda: optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))  # noqa: E731
    try:
        _check_journal(path, log)
        study = make(journal())
        study.get_trials(deepcopy=False)  # the whole journal read now: Optuna reads it lazily
        return study
    except Exception as e:  # noqa: BLE001 - Optuna raises what its JSON parser and storage raise
        aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, aside)
        log(f"search: {path} could not be read ({type(e).__name__}: {str(e).splitlines()[0][:120]}); set aside as "
            f"{os.path.basename(aside)}, the study is rebuilt from the saved rounds")
        return make(journal())


def _check_journal(path: str, log) -> None:
    """Every record of the journal file whole (a ValueError where one is not). A last record cut short
    (a process killed mid-write) is dropped: Optuna skips it when reading, but the next record written
    after it would make the file unreadable. What it recorded is redone (see `_rounds`)."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        raw = f.read()
    good = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # the last, cut short
        json.loads(line)  # raises on a damaged record
        good += len(line)
    if good < len(raw):
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
        log(f"search: {path}: its last record was cut short ({len(raw) - good} bytes, a write killed midway): "
            "dropped")


def _same_search(directory: str, record: dict) -> None:
    path = os.path.join(directory, SEARCH_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"search: {path} cannot be read ({e}): remove it or use another directory") from None
        new = json.loads(json.dumps(record))
        diff = [k for k in sorted(set(new) | set(old)) if old.get(k) != new.get(k)]
        if diff:
            raise UserError(f"search: {directory} holds another search (different {', '.join(diff)}): use another "
                            "directory (trials= may change: a rerun with more trials continues)")
    else:
        fsio.write_json(path, record, indent=1)


def _rounds(data, sp: Space, study, *, trials, batch, startup, sampler, seed, metric, seeds, prune, directory, progress,
            log, options, record) -> SearchResult:
    optuna = _optuna()
    TS = optuna.trial.TrialState
    parts: list[SweepResult] = []
    seen: dict[str, tuple[int, list[int]]] = {}  # a trial's configs (repr) -> (its round's part, rows in that part)
    rows_out, meta_rounds = [], []
    done, k = 0, 0
    # Trials asked and never told are a killed run's (this process holds the directory): FAIL, asked again below.
    stale = {t.number for t in study.get_trials(deepcopy=False) if t.state == TS.RUNNING}
    for num in stale:
        study.tell(num, state=TS.FAIL)
    path = (lambda name: os.path.join(directory, name)) if directory else None  # noqa: E731
    while done < trials:
        n = min(startup if k == 0 else batch, trials - done)
        t_ask = time.perf_counter()
        trials_now = {t.number: t for t in study.get_trials(deepcopy=False)}
        states = {n: t.state for n, t in trials_now.items()}
        saved = _read_round(path(f"round-{k:04d}.json")) if path else None
        if saved is not None:
            numbers, params = saved["numbers"], saved["params"]
            # Told: the study's trial of that number is finished and is this one (a rebuilt or repaired
            # study numbers its trials anew, so a number alone can name another round's trial).
            redo = [j for j, num in enumerate(numbers) if num in stale or not (
                states.get(num) in (TS.COMPLETE, TS.PRUNED, TS.FAIL) and trials_now[num].params == params[j])]
            for j in redo:  # asked, never told (killed): asked again with the same parameters
                study.enqueue_trial(params[j])
            asked = {j: study.ask(sp.distributions) for j in redo}
            for j, t in asked.items():
                numbers[j] = t.number
            if redo:
                fsio.write_json(path(f"round-{k:04d}.json"), {"numbers": numbers, "params": params})
        else:
            if isinstance(sampler, str):
                study.sampler = _sampler(sampler, seed * 1_000_003 + k, batch)
            asked = dict(enumerate(study.ask(sp.distributions) for _ in range(n)))
            numbers = [asked[j].number for j in range(n)]
            params = [asked[j].params for j in range(n)]
            if path:
                fsio.write_json(path(f"round-{k:04d}.json"), {"numbers": numbers, "params": params})
        ask_s = time.perf_counter() - t_ask
        # The configs of this round not trained before, in trial order.
        trial_cfgs = [sp.configs(p, seeds) for p in params]
        new, new_keys = [], []
        for cs in trial_cfgs:
            key = repr([c.to_dict() for c in cs])
            if key not in seen and key not in new_keys:
                new_keys.append(key)
                new.extend(cs)
        t_train = time.perf_counter()
        if new:
            parts.append(_train_round(data, new, prune, options, path(f"round-{k:04d}") if path else None, progress))
            for j, key in enumerate(new_keys):
                seen[key] = (len(parts) - 1, list(range(j * seeds, (j + 1) * seeds)))
        train_s = time.perf_counter() - t_train
        t_tell = time.perf_counter()
        for j, (num, cs) in enumerate(zip(numbers, trial_cfgs)):
            pi, local = seen[repr([c.to_dict() for c in cs])]
            value, reports, pruned = _objective(parts[pi], local, metric)
            offset = sum(len(p) for p in parts[:pi])
            rows = [offset + r for r in local]  # in the joined result
            state = TS.PRUNED if pruned else (TS.COMPLETE if math.isfinite(value) else TS.FAIL)
            if j in asked:  # not told yet
                for epoch, v in reports:
                    if math.isfinite(v):
                        asked[j].report(v, epoch)
                study.tell(asked[j], value if state == TS.COMPLETE else None, state=state)
            rows_out.append({"number": num, "round": k, "state": state.name, "value": value,
                             "stopped_epoch": int(parts[pi].stopped_epoch[local[0]]),
                             **{f"param_{name}": v for name, v in params[j].items()}, "rows": rows})
        tell_s = time.perf_counter() - t_tell
        done += n
        best = np.nanmax if METRICS[metric] == "maximize" else np.nanmin
        values = [r["value"] for r in rows_out if r["state"] == "COMPLETE"]
        meta_rounds.append({"round": k, "trials": n, "configs_trained": len(new), "ask_s": ask_s, "train_s": train_s,
                            "tell_s": tell_s, "best": float(best(values)) if values else math.nan,
                            "resumed": saved is not None})
        log(f"search round {k + 1}: {n} trials ({len(new)} new configs) asked in {ask_s:.1f} s, trained in "
            f"{train_s:.1f} s; best {metric} so far {meta_rounds[-1]['best']:.4f} ({done} of {trials} trials)")
        k += 1
    joined = SweepResult.concat(parts)
    meta = {**record, "trials": trials, "rounds": meta_rounds,
            "ask_s": sum(r["ask_s"] for r in meta_rounds), "train_s": sum(r["train_s"] for r in meta_rounds),
            "tell_s": sum(r["tell_s"] for r in meta_rounds)}
    joined.meta = {**joined.meta, "search": meta}
    return SearchResult(joined, pd.DataFrame(rows_out), study, meta)


def _read_round(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            rec = json.load(f)
        if len(rec["numbers"]) != len(rec["params"]):
            raise ValueError("numbers and params differ in length")
        return rec
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"search: {path} is damaged ({e}): remove it (its round is asked again)") from None


def _train_round(data, configs, prune, options, where: str | None, progress: bool) -> SweepResult:
    """One round's new configs trained (or loaded where its result was saved)."""
    saved = os.path.join(where, "result") if where else None
    if saved and os.path.exists(os.path.join(saved, "manifest.json")):
        try:
            loaded = SweepResult.load(saved)
            if loaded.configs == list(configs):
                return loaded
        except (UserError, ValueError):
            pass  # damaged (or another round's): trained again from its checkpointed chunks
    result = api.sweep(data, configs, prune=prune, progress=progress,
                       checkpoint_dir=os.path.join(where, "chunks") if where else None, **options)
    if saved:
        result.save(saved)
    return result
