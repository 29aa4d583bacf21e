"""Target discovery: ``static_configs`` and ``file_sd_configs``, turned into targets per job.

File-based discovery follows https://prometheus.io/docs/prometheus/latest/configuration/configuration/#file_sd_config:
each file (JSON or YAML) holds a list of target groups ``{targets: [...], labels: {...}}``; every
target gets ``__meta_filepath``. Files are checked for changes (modification time, size, and which
files a glob matches) at every :meth:`TargetDiscovery.refresh` and read again in full every
``refresh_interval``. A file that cannot be read or parsed keeps the targets it had (the error is
counted in ``opswatch_sd_file_read_errors_total`` and kept in :attr:`FileSD.errors`); a file that
disappears takes its targets with it.
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from opswatch.config_errors import describe_validation_error

from .config import FileSDConfig, ScrapeConfig, check_label_names
from .target_labels import ADDRESS_LABEL
from .targets import Target, TargetError, build_target

log = logging.getLogger(__name__)

FILEPATH_LABEL = "__meta_filepath"


@dataclass(frozen=True)
class TargetGroup:
    """Targets sharing labels: ``targets`` (addresses), ``labels`` and ``source`` (where they came from)."""

    targets: tuple[str, ...]
    labels: Mapping[str, str]
    source: str

    def label_sets(self) -> Iterable[dict[str, str]]:
        """One discovered label set per target: the group's labels plus ``__address__``."""
        for address in self.targets:
            yield {**self.labels, ADDRESS_LABEL: address}


class _FileGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: list[str]
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        return check_label_names(v)


_FILE_GROUPS = TypeAdapter(list[_FileGroup])


def read_target_groups(path: str) -> list[TargetGroup]:
    """The target groups of one file_sd file.

    :raises ValueError: naming the file, and the entry and key when the content is wrong.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read target groups: {exc}") from exc
    try:
        groups = _FILE_GROUPS.validate_python(raw if raw is not None else [])
    except ValidationError as exc:
        raise ValueError(describe_validation_error(path, exc)) from exc
    return [TargetGroup(tuple(g.targets), {**g.labels, FILEPATH_LABEL: path}, f"{path}:{i}")
            for i, g in enumerate(groups)]


class FileSD:
    """One ``file_sd_configs`` entry: the target groups of the files it names.

    :param clock: monotonic seconds, to know when ``refresh_interval`` has passed.
    :param read_errors: a counter incremented once per failed read (labels: none).
    """

    def __init__(self, config: FileSDConfig, clock: Callable[[], float] = time.monotonic,
                 read_errors: Counter | None = None):
        self.config = config
        self.clock = clock
        self.read_errors = read_errors
        self.groups: dict[str, list[TargetGroup]] = {}
        self.errors: dict[str, str] = {}
        self._stat: dict[str, tuple[int, int, int]] = {}
        self._last_full = -float("inf")

    def _paths(self) -> list[str]:
        return sorted({p for pattern in self.config.files for p in glob.glob(pattern) if os.path.isfile(p)})

    def refresh(self) -> bool:
        """Re-read the files that changed (all of them once ``refresh_interval`` has passed).

        :returns: True when the target groups changed.
        """
        now = self.clock()
        full = now - self._last_full >= self.config.refresh_interval
        if full:
            self._last_full = now
        changed = False
        paths = self._paths()
        for gone in set(self.groups) - set(paths):
            del self.groups[gone]
            self._stat.pop(gone, None)
            self.errors.pop(gone, None)
            changed = True
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue  # removed since the glob: the next refresh drops it
            stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            if not full and self._stat.get(path) == stat:
                continue
            self._stat[path] = stat
            try:
                groups = read_target_groups(path)
            except ValueError as exc:
                if self.errors.get(path) != str(exc):
                    log.error("file_sd: %s (keeping its previous targets)", exc)
                self.errors[path] = str(exc)
                if self.read_errors is not None:
                    self.read_errors.inc()
                continue
            self.errors.pop(path, None)
            if groups != self.groups.get(path):
                self.groups[path] = groups
                changed = True
        return changed

    def target_groups(self) -> list[TargetGroup]:
        """Every group of every file, in file order."""
        return [g for path in sorted(self.groups) for g in self.groups[path]]


class TargetDiscovery:
    """The targets of all scrape configs, from their static and file-based target groups.

    :param jobs: scrape configs with interval and timeout filled (:meth:`ScrapeConfig.with_defaults`).
    :param registry: where ``opswatch_sd_*`` metrics go.
    :param clock: monotonic seconds (file refresh intervals).
    """

    def __init__(self, jobs: Iterable[ScrapeConfig], registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic):
        registry = registry or CollectorRegistry()
        self.jobs = list(jobs)
        self._read_errors = Counter("opswatch_sd_file_read_errors", "file_sd files that could not be read or parsed.",
                                    registry=registry)
        self._discovered = Gauge("opswatch_sd_discovered_targets", "Targets of each job after relabeling.",
                                 ["job"], registry=registry)
        self._files = {job.job_name: [FileSD(c, clock, self._read_errors) for c in job.file_sd_configs]
                       for job in self.jobs}
        self.errors: dict[str, list[str]] = {}
        self.dropped: dict[str, int] = {}
        for sds in self._files.values():
            for sd in sds:
                sd.refresh()
        self._targets = self._build()

    def _build(self) -> list[Target]:
        targets: dict[Target, None] = {}
        for job in self.jobs:
            groups = [TargetGroup(s.targets, s.labels, f"static:{i}") for i, s in enumerate(job.static_configs)]
            groups += [g for sd in self._files[job.job_name] for g in sd.target_groups()]
            errors, dropped, count = [], 0, 0
            for group in groups:
                for discovered in group.label_sets():
                    try:
                        target = build_target(discovered, job)
                    except TargetError as exc:
                        errors.append(f"job {job.job_name!r}, target {discovered[ADDRESS_LABEL]!r} "
                                      f"({group.source}): {exc}")
                        continue
                    if target is None:
                        dropped += 1
                    elif target not in targets:
                        targets[target] = None
                        count += 1
            for message in set(errors) - set(self.errors.get(job.job_name, [])):
                log.error("discovery: %s", message)
            self.errors[job.job_name], self.dropped[job.job_name] = errors, dropped
            self._discovered.labels(job.job_name).set(count)
        return list(targets)

    def targets(self) -> list[Target]:
        """The current targets, in configuration order, without duplicates."""
        return list(self._targets)

    def file_errors(self) -> dict[str, str]:
        """The file_sd files whose last read failed -> why."""
        return {path: error for sds in self._files.values() for sd in sds for path, error in sd.errors.items()}

    def refresh(self) -> bool:
        """Check the files; rebuild the targets when a file's groups changed.

        :returns: True when the target list changed.
        """
        if not any([sd.refresh() for sds in self._files.values() for sd in sds]):
            return False
        targets = self._build()
        changed = targets != self._targets
        self._targets = targets
        return changed

    @property
    def watches_files(self) -> bool:
        """Whether any job has file_sd_configs (otherwise the targets never change)."""
        return any(self._files.values())

    async def run(self, on_change: Callable[[list[Target]], None], poll_seconds: float = 1.0) -> None:
        """Call ``on_change(targets)`` whenever :meth:`refresh` finds a change, checking every
        ``poll_seconds``, until cancelled."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                changed = await asyncio.to_thread(self.refresh)
            except Exception:  # a bug here must not stop scraping the targets already known
                log.exception("target discovery failed; keeping the current targets")
                continue
            if changed:
                on_change(self.targets())
