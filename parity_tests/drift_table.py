"""The drift table of docs/parity.md, from the deviations the trajectory parity suite measured.

    JAXFIT_PARITY_RESULTS=parity_tests/results/trajectory.json python -m pytest parity_tests/test_trajectory.py
    python parity_tests/drift_table.py [parity_tests/results/trajectory.json]

Prints a Markdown table: per case, its dtype and optimizer steps, the largest |PyTorch - jaxfit| of the
per-epoch losses and of the final parameters and model state, and the tolerance the test applied.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str]) -> int:
    path = argv[0] if argv else os.path.join(HERE, "results", "trajectory.json")
    with open(path) as f:
        doc = json.load(f)
    prov = doc["provenance"]
    v = prov.get("versions", {})
    print(f"Measured {prov.get('date', '?')} on {prov.get('machine', {}).get('cpu', '?')} "
          f"({prov.get('machine', {}).get('cpu_count', '?')} cores), torch {v.get('torch', '?')}, "
          f"jax {v.get('jax', '?')}, commit {prov.get('git') or '?'}.\n")
    print("| case | dtype | steps | loss max abs diff | tolerance | params max abs diff | tolerance |")
    print("|---|---|---|---|---|---|---|")
    for cid, r in doc["cases"].items():
        print(f"| {cid} | {r['dtype']} | {r['steps']} | {r['loss_dev']:.2g} | {r['loss_tol']:g} | "
              f"{r['param_dev']:.2g} | {r['param_tol']:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
