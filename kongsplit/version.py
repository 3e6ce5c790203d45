"""``kongsplit version``: what runs, for bug reports."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version

_DEPENDENCIES = ("aiohttp", "kubernetes-asyncio", "tenacity", "prometheus-client", "PyYAML")


def package_version() -> str:
    try:
        return version("kongsplit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


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
