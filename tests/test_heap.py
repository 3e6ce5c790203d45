"""``HeapKeeper``: the long-lived heap frozen out of the collector's walks, frozen again as it
grows, thawed for one full collection every ``thaw_every``; and the real ``gc`` doing it in a
process of its own (freezing this test process's objects would outlive the test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kongsplit.heap import HeapKeeper

ROOT = Path(__file__).resolve().parents[1]


class FakeGC:
    """Records the calls; ``oldest`` is how many objects generation 2 holds."""

    def __init__(self, oldest: int = 0, enabled: bool = True) -> None:
        self.oldest = oldest
        self.enabled = enabled
        self.calls: list[str] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect({generation})")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.oldest = 0

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def get_objects(self, generation: int | None = None) -> list[object]:
        assert generation == 2
        return [None] * self.oldest

    def isenabled(self) -> bool:
        return self.enabled


def keeper(fake: FakeGC, now: list[float]) -> HeapKeeper:
    return HeapKeeper(freeze_above=100, thaw_every=3600.0, collector=fake, clock=lambda: now[0])


def test_settle_collects_the_young_generations_then_freezes() -> None:
    fake = FakeGC()
    keeper(fake, [0.0]).settle()
    assert fake.calls == ["collect(1)", "freeze"]


@pytest.mark.parametrize(
    ("oldest", "calls"),
    [
        pytest.param(100, [], id="at-the-threshold-nothing"),
        pytest.param(101, ["collect(1)", "freeze"], id="above-it-frozen"),
    ],
)
def test_tick_freezes_once_the_oldest_generation_grew(oldest: int, calls: list[str]) -> None:
    fake = FakeGC(oldest)
    now = [10.0]
    k = keeper(fake, now)
    k.tick()
    assert fake.calls == calls


def test_every_thaw_every_one_full_collection_then_everything_frozen_again() -> None:
    fake = FakeGC(oldest=5)
    now = [0.0]
    k = keeper(fake, now)
    now[0] = 3599.0
    k.tick()
    assert fake.calls == []  # not yet, and the oldest generation is small
    now[0] = 3600.0
    k.tick()
    assert fake.calls == ["unfreeze", "collect(2)", "freeze"]
    assert k.thaws == 1
    fake.calls.clear()
    now[0] = 3600.0 + 3599.0
    k.tick()
    assert fake.calls == []  # the next thaw is an hour after this one


def test_a_disabled_collector_is_left_alone() -> None:
    fake = FakeGC(oldest=10_000, enabled=False)
    now = [0.0]
    k = keeper(fake, now)
    k.settle()
    now[0] = 10_000.0
    k.tick()
    assert fake.calls == []


def test_the_real_collector_in_a_process_of_its_own() -> None:
    """Frozen objects are out of every collection, and a thaw brings them back."""
    code = (
        "import gc; from kongsplit.heap import HeapKeeper\n"
        "now = [0.0]\n"
        "k = HeapKeeper(freeze_above=10, thaw_every=60.0, clock=lambda: now[0])\n"
        "junk = [{'i': [i]} for i in range(5000)]\n"
        "k.settle(); frozen = gc.get_freeze_count()\n"
        "more = [{'i': [i]} for i in range(5000)]; gc.collect(1); gc.collect(1)\n"
        "k.tick(); refrozen = gc.get_freeze_count()\n"
        "now[0] = 60.0; k.tick()\n"
        "print(frozen >= 10000, refrozen >= frozen + 10000, len(gc.get_objects(2)), k.thaws)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "0", "1"], out.stdout + out.stderr
