"""`jaxfit report DIR`: (re)build a sweep directory's report.html; exit 1 when a dataset of it could
not be loaded (the page says so in its place)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UserError


def build_for_sweep(out: str, log) -> str | None:
    from jaxfit import report

    path, failures = report.build_checked(out)
    print_failures(failures)
    log(f"report: {path}")
    return path


def print_failures(failures) -> None:
    for where, why in failures:
        print(f"jaxfit: error: report: could not load {where}: {why} (the page says so in its place)",
              file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        raise UserError(f"{args.dir}: no such sweep directory")
    from jaxfit import report

    path, failures = report.build_checked(args.dir)
    print_failures(failures)
    print(path)
    return 1 if failures else 0
