"""Build a demo sweep and its HTML report in a temporary directory, and screenshot the report.

    python docs/make_screenshot.py                 # -> docs/report.png (1280 x 2400)
    python docs/make_screenshot.py --keep /tmp/x   # keep the sweep and report.html there
    python docs/make_screenshot.py --height 12000 --png /tmp/full.png   # the whole page

The demo asks both documents' questions in small: three widths, with and without input
standardisation, four learning rates (SGD with momentum 0.9, two seeds each, 20 epochs) on sum_bin
and heart_rate, plus one planted divergent config (MSE on
one-hot targets with SGD at lr=1e6). The screenshot is taken by headless Chromium (Debian:
``apt-get install -y chromium``) from the file itself, with networking components disabled: the
report is one self-contained file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def demo_sweep(out_dir: str) -> str:
    import jaxfit

    configs = jaxfit.grid(hidden=[(4,), (16,), (32, 32)], input_norm=["none", "standardize"],
                          lr=[1e-3, 1e-2, 1e-1, 1.0], optimizer="sgd", momentum=0.9, seed=range(2), epochs=20)
    configs.append(jaxfit.Config(hidden=(16,), loss="mse", optimizer="sgd", momentum=0.9, lr=1e6, epochs=20))
    for data in (jaxfit.datasets.sum_bin(n=1000, seed=0), jaxfit.datasets.heart_rate(n=1000, seed=0)):
        t0 = time.perf_counter()
        result = jaxfit.sweep(data, configs)
        result.save(os.path.join(out_dir, data.name))
        print(f"{data.name}: {len(configs)} configs, {int(result.diverged.sum())} diverged, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    return out_dir


def screenshot(html_path: str, png: str, width: int, height: int, chromium: str) -> None:
    profile = tempfile.mkdtemp(prefix="jaxfit-chromium-")
    try:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={os.path.abspath(png)}",
               f"--window-size={width},{height}", "file://" + os.path.abspath(html_path)]
        subprocess.run(cmd, check=True, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--png", default=os.path.join(HERE, "report.png"), help="screenshot file (default docs/report.png)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2400)
    p.add_argument("--keep", help="build the sweep and report here and keep them (default: a temp dir)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jaxfit.report

    work = args.keep or tempfile.mkdtemp(prefix="jaxfit-report-demo-")
    os.makedirs(work, exist_ok=True)
    try:
        demo_sweep(work)
        t0 = time.perf_counter()
        html_path = jaxfit.report.build(work)
        print(f"report: {html_path} ({os.path.getsize(html_path) / 1e6:.1f} MB, "
              f"{time.perf_counter() - t0:.1f} s)", flush=True)
        screenshot(html_path, args.png, args.width, args.height, args.chromium)
        print(f"screenshot: {args.png}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
