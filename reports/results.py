"""Read one run folder (../shared/DESIGN.md, "Results format"); nothing else is an input.

``summary.json`` holds the headline figures, ``run.json`` the scenario and environment,
``series.csv`` the per-second rows and ``latency.hlog`` the per-second HDR histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
DIGITS = 3


class ReportError(Exception):
    """Results that cannot be reported on; the message says why."""


def _read_json(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReportError(
            f"{run_dir} holds no {path.name}: is it an rtbench results folder?"
        ) from None
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}); was the run's disk full?") from None
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{path} has results schema version {version!r}; this rtbench reads version "
            f"{SCHEMA_VERSION} only: re-run the scenario, or report with the rtbench that wrote it"
        )
    return data


def load_summary(run_dir: Path) -> dict[str, Any]:
    return _read_json(run_dir / "summary.json", run_dir)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass(slots=True)
class Interval:
    tag: str
    start_s: float
    histogram: HdrHistogram


@dataclass
class RunData:
    """One results folder, loaded lazily: the per-second files only when a chart needs them."""

    dir: Path
    summary: dict[str, Any]
    meta: dict[str, Any]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = self.meta.get("environment", {})
        return env

    @property
    def scenario(self) -> dict[str, Any]:
        scenario: dict[str, Any] = self.meta.get("scenario", {})
        return scenario

    @property
    def transports(self) -> dict[str, dict[str, Any]]:
        transports: dict[str, dict[str, Any]] = self.summary.get("transports", {})
        return transports

    @property
    def instances(self) -> int:
        return int(self.scenario.get("target", {}).get("processes", 1))

    @cached_property
    def series(self) -> pd.DataFrame:
        import pandas as pd  # about 0.4 s to import: only the reports read the series

        path = self.dir / "series.csv"
        if not path.exists():
            return pd.DataFrame()
        series = pd.read_csv(path)
        if "repeat" in series.columns:
            # Repeats restart the clock; charts and spectra use the first, compare uses all
            # (from summary.json).
            series = series[series["repeat"] == 1]
        return series

    def intervals(self) -> list[Interval]:
        """Every histogram interval of ``latency.hlog``, in file order."""
        path = self.dir / "latency.hlog"
        out: list[Interval] = []
        if not path.exists():
            return out
        with path.open() as lines:
            for line in lines:
                if not line.startswith("Tag="):
                    continue
                tag, start, _length, _max, payload = line.rstrip("\n").split(",", 4)
                out.append(Interval(tag[4:], float(start), HdrHistogram.decode(payload)))
        return out

    def hold_histograms(self) -> dict[tuple[str, int], HdrHistogram]:
        """Merged latency of the measured (hold) seconds per (transport, step).

        An interval belongs to the series row that closed it: same transport, ``t_s`` one
        second after the interval's start.
        """
        cached = self._cache.get("hold")
        if cached is not None:
            merged_cached: dict[tuple[str, int], HdrHistogram] = cached
            return merged_cached
        series = self.series
        merged: dict[tuple[str, int], HdrHistogram] = {}
        if not series.empty:
            hold = series[series["phase"] == "hold"]
            owner = {
                (str(t), round(float(ts) - 1.0, 3)): int(step)
                for t, ts, step in zip(hold["transport"], hold["t_s"], hold["step"], strict=True)
            }
            for interval in self.intervals():
                step = owner.get((interval.tag, round(interval.start_s, 3)))
                if step is None:
                    continue
                key = (interval.tag, step)
                if key not in merged:
                    merged[key] = new_histogram()
                merged[key].add(interval.histogram)
        self._cache["hold"] = merged
        return merged


def load_run(run_dir: Path) -> RunData:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a folder: give a results/<run-id> folder")
    summary = load_summary(run_dir)
    meta = _read_json(run_dir / "run.json", run_dir)
    return RunData(run_dir, summary, meta)
