"""``kongsplit version``: what runs, for bug reports."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version

from kongsplit.metrics import package_version

_DEPENDENCIES = ("aiohttp", "kubernetes-asyncio", "tenacity", "prometheus-client", "PyYAML")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    print(f"kongsplit {package_version()}")
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    for dist in _DEPENDENCIES:
        try:
            print(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            print(f"{dist} (not installed)")
    return 0
