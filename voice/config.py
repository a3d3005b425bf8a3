"""Service configuration: defaults, then an optional TOML file, then command-line flags.

Example ``voice.toml`` (every key optional)::

    host = "127.0.0.1"
    port = 8765
    api_keys = ["change-me"]
    insecure = false
    allowed_origins = []       # browser origins besides the server's own, "https://app.example"
    allowed_hosts = []         # Host names besides loopback ones when bound to loopback
    wyoming_port = 10300       # also serve Wyoming (Home Assistant); unset: off
    wyoming_mcp = []           # "label=URL" MCP servers whose tools Wyoming's assistant uses
                               # (bearer token, if any: $VOICE_WYOMING_MCP_TOKEN)
    memory_trim_interval_s = 30   # give freed memory back while idle; 0: never
    memory_mmap_threshold_kib = 8192  # buffers this big are given back when freed; 0: glibc's
    websocket_compression = true  # permessage-deflate for clients that offer it (-30 % bytes)

    [models]
    asr = "whisper-base"
    llm = "qwen2.5-coder-0.5b-instruct"
    tools_llm = "qwen2.5-coder-1.5b-instruct"  # writes the replies that may call tools;
                               # "": the llm above (faster on a CPU, but it calls badly);
                               # unset with llm set: the llm
    voice = "en_US-joe-medium"
    turn = "smart-turn-v3.2"   # the end-of-turn model of semantic_vad
    device = "auto"            # auto | cpu | cuda
    compute_type = "auto"      # auto | int8 | float16 | int8_float16

    [voices]                   # language -> Piper voice name (catalog) or .onnx path
    de = "de_DE-thorsten-medium"

    [vad]                      # a session's default turn detection
    type = "semantic_vad"      # semantic_vad (a turn model judges each pause) | server_vad
    eagerness = "auto"         # semantic_vad: low | medium | high | auto
    threshold = 0.5
    prefix_padding_ms = 300
    silence_duration_ms = 500  # server_vad

    [asr]
    languages = ["en", "de", "fr", "es", "it", "nl", "pt", "pl"]
    partial_interval_s = 1.0   # 0 turns partial transcripts off
    beam_size = 0              # a final transcript's beam while no other session waits; 0: auto
    second_language_below = 0.6  # a first turn's language this unsure is decoded twice; 0: never
    threads = 0                # threads per decode; 0: a quarter of the cores (1-4)

    [tts]
    first_piece_words = 4      # speech starts after this many words of a reply; 0: a boundary

    [assistant]
    name = "Nova"              # what the assistant calls itself
    persona = ""               # more about it for the model, e.g. "You work at ACME's help desk."
    ask_again_min_speech_s = 1.0  # speech this long not made out: "Sorry, I didn't..."; 0: off

    [llm]
    max_output_tokens = 200         # a reply's length unless the client asks otherwise
    max_output_tokens_limit = 1024  # the most a client may ask for ("inf" means this)
    replicas = 4                    # model copies generating at once (share the weights)
    tools_replicas = 0              # copies of the tools model; 0: one per two CPU cores
    threads = 0                     # threads per copy; 0: the cores shared (AMD: 2 at least)
    batch = 0                       # replies decoded together per copy; 0: 32 on CUDA, 1 on CPU
    context_tokens = 2048           # prompt + reply; older turns are left out beyond it
    prompt_cache_tokens = 3072      # kept model states of system prompts and conversations
    tools_prompt_cache_tokens = 0   # the tools model's (system turns); 0: a third of the above
    write_ahead_s = 0               # >0: a spoken reply's writing waits this far ahead of playback
    give_way_s = 2.5                # with this much unplayed, it waits for others' turns; 0: never
    call_when_torn = 0.2            # words first, but a call this likely: write the call; 0: off

    [mcp]                      # MCP tools the service runs for clients (session tools "mcp")
    hosts = []                 # hosts ("name" or "name:port") clients may name; empty: MCP off
    timeout_s = 10             # one listing or call of an MCP server, connection included

    [limits]
    max_sessions = 16
    max_message_bytes = 1048576
    max_session_s = 3600
    max_buffer_s = 120
    max_utterance_s = 30
    max_item_chars = 16000     # text of one conversation item, and of instructions
    max_history_chars = 64000  # a session's conversation; the oldest items go beyond it
    idle_timeout_s = 300       # no client message for this long closes the session; 0: never
    max_outbox_bytes = 8388608 # events queued for a client that does not read; then closed
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from llm.prompts import DEFAULT_ASSISTANT_NAME
from tts.segmenter import FIRST_PIECE_MAX_WORDS
from voice.gate import is_loopback_name, normalize_host, normalize_origin

DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")
MAX_MMAP_THRESHOLD_KIB = 32 * 1024  # the most glibc accepts on 64-bit systems


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Limits:
    max_sessions: int = 16
    max_message_bytes: int = 1 << 20
    max_session_s: float = 3600.0
    max_buffer_s: float = 120.0
    max_utterance_s: float = 30.0
    max_item_chars: int = 16_000
    max_history_chars: int = 64_000
    idle_timeout_s: float = 300.0  # 0: sessions never time out
    max_outbox_bytes: int = 8 << 20


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    api_keys: tuple[str, ...] = ()
    insecure: bool = False
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    asr_model: str | None = None  # None: the catalog default
    llm_model: str | None = None
    # The model for replies whose prompt shows tools (None: the catalog's default when
    # llm_model is unset too, else llm_model; "": llm_model). On the CPU the default 0.5B
    # model calls the wrong function, or none, for a third of typed commands; the 1.5B model
    # for under a tenth (docs/benchmarks.md, "Spoken commands"), at about a third of the speed.
    tools_llm_model: str | None = None
    voice: str | None = None
    turn_model: str | None = None
    device: str = "auto"
    compute_type: str = "auto"
    voices: Mapping[str, str] = dataclasses.field(default_factory=dict)
    vad_type: str = "semantic_vad"
    vad_eagerness: str = "auto"
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    languages: tuple[str, ...] | None = DEFAULT_LANGUAGES
    partial_interval_s: float = 1.0
    # A final transcript's beam while the engines work for no one else; 0: two on a CPU where
    # CTranslate2 uses Intel's MKL (as fast as greedy there), else one (asr.whisper.
    # default_beam_size).
    beam_size: int = 0
    # A session's first turn whose detected language is less probable than this is decoded
    # again in the runner-up language (asr.transcript.TranscribeOptions); 0: never.
    second_language_below: float = 0.6
    # Threads of one Whisper decode (two decode at once); 0: on the CPU a quarter of the cores,
    # one to four (asr.whisper.default_cpu_threads), CTranslate2's default on a GPU.
    asr_threads: int = 0
    max_output_tokens: int = 200
    # Four, even on two cores: four replies start at once instead of two waiting for whole
    # replies (docs/benchmarks.md, "LLM concurrency": first token p90 3.0 vs 11.2 s).
    llm_replicas: int = 4
    # Threads per replica; 0: the machine's cores shared among replicas (llm.chat.default_threads),
    # at least two each where CTranslate2 uses oneDNN (AMD processors): there a reply alone
    # writes 26 % faster on two cores than with one thread per copy (docs/benchmarks.md, "The
    # first words sooner on two cores", "Four words on two threads"); with Intel's MKL one
    # thread a copy gave the first audio sooner ("One thread a language model copy on Intel's
    # MKL").
    llm_threads: int = 0
    # Copies of the tools model (tools_llm); 0: one per two cores on the CPU (two threads
    # each), llm_replicas on a GPU. On two cores one copy wrote a call in 3.0 s (median) where
    # four copies of one thread each took 4.6 s, and held 1 GB less (docs/benchmarks.md).
    llm_tools_replicas: int = 0
    llm_batch: int = 0  # replies decoded together per replica; 0: 32 on CUDA, 1 on the CPU
    # Prompt + reply, in tokens. A long conversation keeps only its newest turns within this:
    # every turn's prompt is processed again, so on a CPU its length is latency (and memory).
    llm_context_tokens: int = 2048
    # The model states kept after system prompts and conversations so far (on the CPU), so a
    # reply reads only what is new; ~170-290 KB a token for the 0.5B model (the tools model
    # gets a third of the tokens, for its system turns with tools only). Past it the model is
    # reloaded with an empty cache (llm.chat, ChatConfig.prompt_cache_tokens). 0: none kept.
    llm_prompt_cache_tokens: int = 3072
    # The tools model's kept system turns (~410 tokens each with three tools, ~344 KB a token);
    # 0: a third of llm_prompt_cache_tokens, two or three turns. More languages in rotation
    # read their turn again after each reload (docs/benchmarks.md, "The tools model keeps its
    # system turns").
    llm_tools_prompt_cache_tokens: int = 0
    # Under tool_choice auto, a reply whose first token is words while the model gave the
    # openings of a call at least this probability is written as a call (llm/torn.py; the
    # CPU path only). 0: off (docs/benchmarks.md, "A reply torn between words and a call").
    llm_call_when_torn: float = 0.2
    # A spoken reply's writing waits while this much of its speech is ahead of what the client
    # has played (voice/pacing.py): the model writes ~4x faster than speech, and a whole reply
    # written at once takes the cores the echo guard and the next piece need. 0 (the default):
    # no limit. At 3 s it showed no measured gain on two cores (docs/benchmarks.md, "A spoken
    # reply written at the pace it is played"), and clients that wait for response.done
    # before their next turn wait until near the end of playback.
    llm_write_ahead_s: float = 0.0
    # A spoken reply's writing waits while someone else waits for a transcript or a reply's
    # first words, as long as at least this much of its audio is with its client and not yet
    # played (voice/pacing.py): on a small CPU the other turn gets the cores, and nothing is
    # heard later. 0: never (docs/benchmarks.md, "A reply far ahead of its listener gives
    # way").
    llm_give_way_s: float = 2.5
    # A spoken reply's first piece goes to the voice after at most this many words (never
    # ending on an article, a preposition or a conjunction; tts/segmenter.py), so speech
    # starts before the first sentence is written. 0: the first piece waits for a boundary.
    # The second piece has at most twice as many, so that it is ready before the first has
    # played (docs/benchmarks.md, "Four words first, eight next").
    tts_first_piece_words: int = FIRST_PIECE_MAX_WORDS
    max_output_tokens_limit: int = 1024
    assistant_name: str = DEFAULT_ASSISTANT_NAME
    assistant_persona: str = ""
    # A turn of at least this much speech that Whisper could not make out gets "Sorry, I
    # didn't catch that. Could you say it again?" in the user's language (voice/ask_again.py)
    # instead of no reply; shorter sounds (a cough, a door) still get none. 0: never ask.
    ask_again_min_speech_s: float = 1.0
    # The service calls the MCP servers clients name, but only on these hosts: outbound
    # requests to where a client says are the operator's choice (docs/protocol.md, "MCP tools").
    mcp_hosts: tuple[str, ...] = ()
    mcp_timeout_s: float = 10.0
    wyoming_port: int | None = None  # also serve the Wyoming protocol here (same host)
    wyoming_mcp: tuple[str, ...] = ()  # "label=http(s)://..." for Wyoming's assistant
    limits: Limits = dataclasses.field(default_factory=Limits)
    shutdown_grace_s: float = 10.0
    # While no engine call is queued or running, give freed native memory back to the
    # system at most this often (glibc's malloc_trim; voice/memory.py). 0 turns it off.
    memory_trim_interval_s: float = 30.0
    # Buffers of this many KiB and more get their own mmap, given back to the system when
    # freed; glibc's own threshold rises with the biggest buffer freed so far, after which
    # the engines' big buffers stay in its heaps (voice/memory.py). 0 keeps glibc's default.
    memory_mmap_threshold_kib: int = 8192
    # permessage-deflate for clients that offer it: audio deltas take ~30 % fewer bytes, for
    # ~0.6 % of a core per session of audio in the event loop's thread (docs/benchmarks.md,
    # "Out of GPU memory, and the load ramp again"). Off: less work for a busy server on a LAN.
    websocket_compression: bool = True

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a message that says what to do."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if not isinstance(self.memory_trim_interval_s, int | float) or \
                self.memory_trim_interval_s < 0:
            raise ConfigError("memory_trim_interval_s must be a number of seconds, 0 or more "
                              "(0 turns trimming off)")
        if not isinstance(self.ask_again_min_speech_s, int | float) or \
                isinstance(self.ask_again_min_speech_s, bool) or self.ask_again_min_speech_s < 0:
            raise ConfigError("ask_again_min_speech_s must be a number of seconds, 0 or more "
                              "(0: speech that is not made out gets no reply)")
        if not isinstance(self.websocket_compression, bool):
            raise ConfigError("websocket_compression must be true or false")
        threshold = self.memory_mmap_threshold_kib
        if isinstance(threshold, bool) or not isinstance(threshold, int) or \
                not 0 <= threshold <= MAX_MMAP_THRESHOLD_KIB:
            raise ConfigError("memory_mmap_threshold_kib must be a whole number of KiB from 0 "
                              f"(glibc's default) to {MAX_MMAP_THRESHOLD_KIB}")
        for name in ("api_keys", "allowed_origins", "allowed_hosts"):
            values = getattr(self, name)
            if not isinstance(values, tuple | list) or not all(isinstance(v, str)
                                                                for v in values):
                raise ConfigError(f"{name} must be a list of strings")
        if any(not key.strip() for key in self.api_keys):
            raise ConfigError(
                "an API key is empty; refusing to start (typical cause: --api-key \"$KEY\" "
                "with KEY unset)")
        for origin in self.allowed_origins:
            if normalize_origin(origin) is None:
                raise ConfigError(f"allowed origin {origin!r} is not of the form "
                                  "http(s)://host[:port]")
        for host in self.allowed_hosts:
            if normalize_host(host) is None:
                raise ConfigError(f"allowed host {host!r} is not a host name without a port "
                                  "(e.g. voice.internal)")
        for entry in self.wyoming_mcp:
            label, _, url = entry.partition("=")
            if not label or not url.startswith(("http://", "https://")):
                raise ConfigError(f"wyoming_mcp entry {entry!r} is not LABEL=http(s)://...")
        if self.wyoming_port is not None and not 0 <= self.wyoming_port <= 65535:
            raise ConfigError(f"wyoming port {self.wyoming_port} is out of range")
        if self.wyoming_port is not None and not is_loopback(self.host) and not self.insecure:
            raise ConfigError(
                f"refusing to serve Wyoming on {self.host}: the Wyoming protocol has no "
                "authentication, so anyone who can reach the port could use it. Pass --insecure "
                "if the network is yours (Home Assistant on another machine), or keep the host "
                "on loopback.")
        if not is_loopback(self.host) and not self.api_keys and not self.insecure:
            raise ConfigError(
                f"refusing to listen on {self.host} without API keys: anyone who can reach it "
                "could use the service. Set --api-key (or api_keys in the config file), or "
                "pass --insecure if another layer authenticates clients.")
        if not 0 < self.vad_threshold < 1:
            raise ConfigError("vad threshold must be between 0 and 1")
        if self.vad_type not in ("server_vad", "semantic_vad"):
            raise ConfigError(f"vad type {self.vad_type!r} is not server_vad or semantic_vad")
        if self.vad_eagerness not in ("low", "medium", "high", "auto"):
            raise ConfigError(f"vad eagerness {self.vad_eagerness!r} is not low, medium, high "
                              "or auto")
        if self.limits.max_sessions < 1:
            raise ConfigError("max_sessions must be at least 1")
        if self.beam_size < 0:
            raise ConfigError("asr beam_size must be 0 (automatic) or more")
        if not 0 <= self.second_language_below <= 1:
            raise ConfigError("asr second_language_below must be between 0 (never) and 1")
        if self.asr_threads < 0:
            raise ConfigError("asr threads must be 0 (automatic) or more")
        if self.llm_threads < 0:
            raise ConfigError("llm threads must be 0 (automatic) or more")
        if self.llm_tools_replicas < 0:
            raise ConfigError("llm tools_replicas must be 0 (automatic) or more")
        if self.llm_replicas < 1:
            raise ConfigError("llm replicas must be at least 1")
        if self.tts_first_piece_words < 0:
            raise ConfigError("tts first_piece_words must be 0 (wait for a boundary) or more")
        if self.llm_write_ahead_s < 0:
            raise ConfigError("llm write_ahead_s must be 0 (no limit) or more")
        if self.llm_give_way_s < 0:
            raise ConfigError("llm give_way_s must be 0 (never) or more")
        if self.llm_prompt_cache_tokens < 0:
            raise ConfigError("llm prompt_cache_tokens must be 0 (keep none) or more")
        if self.llm_tools_prompt_cache_tokens < 0:
            raise ConfigError("llm tools_prompt_cache_tokens must be 0 (a third of "
                              "prompt_cache_tokens) or more")
        if not 0 <= self.llm_call_when_torn <= 1:
            raise ConfigError("llm call_when_torn must be between 0 (off) and 1")
        if self.llm_batch < 0:
            raise ConfigError("llm batch must be 0 (automatic) or more")
        if self.llm_context_tokens < self.max_output_tokens_limit + 256:
            raise ConfigError(f"llm context_tokens ({self.llm_context_tokens}) must leave room "
                              f"for a reply of max_output_tokens_limit "
                              f"({self.max_output_tokens_limit}) and a prompt (256 or more)")
        if not isinstance(self.assistant_name, str) or not self.assistant_name.strip() \
                or "\n" in self.assistant_name or len(self.assistant_name) > 64:
            raise ConfigError("assistant name must be one line of 1 to 64 characters")
        if not isinstance(self.assistant_persona, str) \
                or len(self.assistant_persona) > self.limits.max_item_chars:
            raise ConfigError(f"assistant persona must be text of at most max_item_chars "
                              f"({self.limits.max_item_chars}) characters")
        if not isinstance(self.mcp_hosts, tuple | list) or not all(
                isinstance(h, str) and h.strip() and "/" not in h and " " not in h
                for h in self.mcp_hosts):
            raise ConfigError("mcp hosts must be a list of host names, optionally with a port "
                              "(e.g. \"127.0.0.1:8000\"), without a scheme or path")
        if not 0 < self.mcp_timeout_s <= 300:
            raise ConfigError("mcp timeout_s must be between 0 and 300 seconds")
        if self.languages:
            from asr.whisper import whisper_languages

            unknown = [code for code in self.languages if code not in whisper_languages()]
            if unknown:
                raise ConfigError(f"unknown language code(s) {', '.join(unknown)} in languages; "
                                  "use Whisper's codes such as en, de, fr")
        if not 1 <= self.max_output_tokens <= self.max_output_tokens_limit:
            raise ConfigError(f"max_output_tokens ({self.max_output_tokens}) must be between 1 "
                              f"and max_output_tokens_limit ({self.max_output_tokens_limit})")
        if not 1 <= self.limits.max_item_chars <= self.limits.max_history_chars:
            raise ConfigError(f"max_item_chars ({self.limits.max_item_chars}) must be between "
                              f"1 and max_history_chars ({self.limits.max_history_chars})")
        if self.limits.idle_timeout_s < 0:
            raise ConfigError("idle_timeout_s must be 0 (never) or more")
        if self.limits.max_outbox_bytes < 1024:
            raise ConfigError("max_outbox_bytes must be at least 1024")


def is_loopback(host: str) -> bool:
    """Whether the address to bind is a loopback one (``localhost``, 127.x, ::1)."""
    return is_loopback_name(host)
