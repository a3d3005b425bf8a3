// The browser client: microphone -> websocket (OpenAI Realtime events) -> speakers.
//
// Capture runs in an AudioWorklet (capture-worklet.js) that resamples to the session rate and
// makes PCM16; replies are scheduled gap-free as AudioBufferSourceNodes at a running time
// cursor. On `input_audio_buffer.speech_started` playback stops at once and, if a reply was
// audible, `conversation.item.truncate` tells the server how much of it was played.
//
// window.voiceState exposes what the page saw (for tests and curious users).

const SUPPORTED_RATES = [16000, 24000, 48000];
const PLAYBACK_LEAD_S = 0.06; // schedule the first chunk of a burst this far ahead
const MAX_PENDING_CHUNKS = 250; // mic audio kept while the session is set up (5 s)

const params = new URLSearchParams(location.search);
const RATE = SUPPORTED_RATES.includes(Number(params.get("rate"))) ? Number(params.get("rate"))
  : 24000;
const BINARY = params.get("binary") === "1";

const $ = (id) => document.getElementById(id);

const voiceState = {
  connection: "idle", // idle | connecting | connected | closed | error
  activity: "idle", // idle | listening | speaking-user | thinking | speaking-assistant
  sessionId: null,
  rate: RATE,
  language: null,
  transcripts: [], // {itemId, text, language, languageProbability}
  partials: [], // {itemId, confirmed, tentative}
  turns: [], // {responseId, itemId, userItemId, status, language, text, audioSamples, latency, ...}
  truncations: [], // sent: {itemId, audioEndMs, playedBefore, sourcesAfter}
  truncated: [], // confirmed by the server: {itemId, audioEndMs}
  replyAudioSamples: 0,
  sentAudioMs: 0,
  events: 0,
  errors: [], // {code, message, type}
};
window.voiceState = voiceState;

let ws = null;
let audio = null; // {ctx, stream, source, node, sink}
let sessionReady = false;
let pendingAudio = [];
let lastUserItemId = null;
let speechStoppedAt = null; // performance.now() of the latest speech_stopped
const interrupted = new Set(); // response ids whose audio must not be played any more
const turnsById = new Map();
const userBubbles = new Map();
let clientEventSeq = 0;

// -- playback ------------------------------------------------------------------------------

const player = {
  cursor: 0,
  sources: new Set(),
  itemId: null, // the assistant item being played
  responseId: null,
  chunks: [], // {start, duration} of the current item, AudioContext seconds
};

function playChunk(turn, samples) {
  const ctx = audio.ctx;
  if (player.itemId !== turn.itemId) {
    player.itemId = turn.itemId;
    player.responseId = turn.responseId;
    player.chunks = [];
  }
  const buffer = ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  const now = ctx.currentTime;
  if (player.cursor < now + 0.005) player.cursor = now + PLAYBACK_LEAD_S; // start or underrun
  source.start(player.cursor);
  if (turn.firstAudioAt === null) {
    turn.firstAudioAt = performance.now() + (player.cursor - now) * 1000;
    const outputDelay = (ctx.outputLatency || 0) + (ctx.baseLatency || 0);
    if (turn.speechStoppedAt !== null) {
      turn.clientFirstAudioMs = Math.round(turn.firstAudioAt - turn.speechStoppedAt
        + outputDelay * 1000);
    }
  }
  player.chunks.push({start: player.cursor, duration: buffer.duration});
  player.cursor += buffer.duration;
  player.sources.add(source);
  source.onended = () => {
    player.sources.delete(source);
    if (player.sources.size === 0 && voiceState.activity === "speaking-assistant") {
      setActivity("listening");
    }
  };
  setActivity("speaking-assistant");
}

function playedMs() {
  if (!audio) return 0;
  const now = audio.ctx.currentTime;
  let played = 0;
  for (const chunk of player.chunks) {
    played += Math.min(Math.max(now - chunk.start, 0), chunk.duration);
  }
  return played * 1000;
}

function stopPlayback() {
  for (const source of player.sources) {
    source.onended = null;
    try { source.stop(); } catch { /* already stopped */ }
  }
  player.sources.clear();
  player.cursor = 0;
  player.chunks = [];
  player.itemId = null;
  player.responseId = null;
}

function bargeIn() {
  // The user speaks: silence the reply at once; tell the server how much of it was heard.
  const active = voiceState.turns.filter((t) => t.status === "in_progress");
  for (const turn of active) interrupted.add(turn.responseId);
  if (player.sources.size === 0) return;
  const itemId = player.itemId;
  const responseId = player.responseId;
  const total = player.chunks.reduce((sum, c) => sum + c.duration, 0) * 1000;
  const played = Math.floor(playedMs());
  const playing = player.sources.size;
  stopPlayback();
  interrupted.add(responseId);
  const turn = turnsById.get(responseId);
  if (turn) {
    turn.interruptedAtMs = played;
    renderTurn(turn);
  }
  if (played > 0 && played < total) {
    send({type: "conversation.item.truncate", item_id: itemId, content_index: 0,
      audio_end_ms: played});
    voiceState.truncations.push({itemId, audioEndMs: played, totalMs: Math.round(total),
      playingSources: playing, sourcesAfter: player.sources.size});
  }
}

// -- websocket -------------------------------------------------------------------------------

function send(event) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  clientEventSeq += 1;
  ws.send(JSON.stringify({event_id: `event_web_${clientEventSeq}`, ...event}));
}

function base64FromBytes(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function floatsFromBase64Pcm16(b64) {
  const binary = atob(b64);
  const count = binary.length >> 1;
  const samples = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let value = binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8);
    if (value >= 0x8000) value -= 0x10000;
    samples[i] = value / 32768;
  }
  return samples;
}

function sendAudio(pcm) {
  if (!pcm.byteLength) return;  // the server refuses an empty append
  if (BINARY) ws.send(pcm);
  else send({type: "input_audio_buffer.append", audio: base64FromBytes(new Uint8Array(pcm))});
  voiceState.sentAudioMs += (pcm.byteLength / 2 / RATE) * 1000;
}

function onMicChunk({pcm, peak}) {
  $("level").style.width = `${Math.min(100, Math.round(Math.sqrt(peak) * 100))}%`;
  if (!ws || ws.readyState !== WebSocket.OPEN || !sessionReady) {
    pendingAudio.push(pcm);
    if (pendingAudio.length > MAX_PENDING_CHUNKS) pendingAudio.shift();
    return;
  }
  sendAudio(pcm);
}

function websocketUrl(key, inQuery) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}/v1/realtime`);
  if (inQuery && key) url.searchParams.set("api_key", key);
  return url.toString();
}

function openSocket(key) {
  // Browsers cannot set an Authorization header: the key travels as a subprotocol (or, for a
  // key that is not a valid subprotocol token, as ?api_key=).
  try {
    return new WebSocket(websocketUrl(key, false),
      key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"]);
  } catch (error) {
    if (!key) throw error;
    return new WebSocket(websocketUrl(key, true), ["realtime"]);
  }
}

function connect(key) {
  return new Promise((resolve, reject) => {
    let opened = false;
    const socket = openSocket(key);
    ws = socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      opened = true;
      setConnection("connected", "Connected");
      send({type: "session.update", session: {
        type: "realtime",
        audio: {
          input: {format: {type: "audio/pcm", rate: RATE}},
          output: {format: {type: "audio/pcm", rate: RATE}},
        },
      }});
      resolve();
    };
    socket.onmessage = (message) => {
      if (socket !== ws) return;
      if (typeof message.data !== "string") return;
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      voiceState.events += 1;
      try { onEvent(event); } catch (error) { console.error("event handling failed", event, error); }
    };
    socket.onclose = async (close) => {
      if (socket !== ws) return; // closed by Stop, or an older socket
      const wasOpen = opened;
      ws = null;
      sessionReady = false;
      if (!wasOpen) {
        const reason = await explainRefusal();
        setConnection("error", "Connection refused");
        reject(new Error(reason));
        return;
      }
      if (audio) {
        // Closed by the server (or the network), not by Stop.
        const detail = close.code === 1000 ? "" : ` (code ${close.code}${close.reason ? `: ${close.reason}` : ""})`;
        setConnection(close.code === 1000 ? "closed" : "error", `Disconnected${detail}`);
        if (close.code !== 1000) addError("connection_closed", `The server closed the session${detail}.`);
        await stopAudio();
        setButton("start");
      }
    };
  });
}

async function explainRefusal() {
  try {
    const response = await fetch("/healthz", {cache: "no-store"});
    if (response.ok) {
      const health = await response.json();
      if (health.status !== "ok") return "The server is shutting down.";
      if (health.sessions_active >= health.sessions_max) {
        return "The server is at its session limit; try again later.";
      }
      return "The server refused the connection: a missing or wrong API key?";
    }
  } catch { /* unreachable */ }
  return "Could not reach the server.";
}

// -- server events ---------------------------------------------------------------------------

function onEvent(event) {
  switch (event.type) {
    case "session.created":
      voiceState.sessionId = event.session && event.session.id;
      break;
    case "session.updated":
      if (!sessionReady) {
        sessionReady = true;
        const queued = pendingAudio;
        pendingAudio = [];
        for (const pcm of queued) sendAudio(pcm);
        setActivity("listening");
      }
      break;
    case "input_audio_buffer.speech_started":
      bargeIn();
      userBubble(event.item_id);
      setActivity("speaking-user");
      break;
    case "input_audio_buffer.speech_stopped":
      speechStoppedAt = performance.now();
      setActivity("thinking");
      break;
    case "input_audio_buffer.committed":
      lastUserItemId = event.item_id;
      break;
    case "conversation.item.input_audio_transcription.delta":
      onPartial(event);
      break;
    case "conversation.item.input_audio_transcription.completed":
      onTranscript(event);
      break;
    case "response.created":
      onResponseCreated(event.response);
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta": {
      const turn = turnsById.get(event.response_id);
      if (turn) {
        turn.text += event.delta;
        renderTurn(turn);
      }
      break;
    }
    case "response.output_audio.delta": {
      const turn = turnsById.get(event.response_id);
      if (!turn) break;
      turn.itemId = turn.itemId || event.item_id;
      const samples = floatsFromBase64Pcm16(event.delta);
      turn.audioSamples += samples.length;
      voiceState.replyAudioSamples += samples.length;
      if (!interrupted.has(event.response_id) && audio) playChunk(turn, samples);
      break;
    }
    case "response.output_item.added":
    case "conversation.item.added": {
      const turn = event.response_id ? turnsById.get(event.response_id) : null;
      if (turn && event.item && event.item.role === "assistant") turn.itemId = event.item.id;
      break;
    }
    case "response.done":
      onResponseDone(event.response);
      break;
    case "conversation.item.truncated":
      voiceState.truncated.push({itemId: event.item_id, audioEndMs: event.audio_end_ms});
      break;
    case "error":
      onError(event.error || {});
      break;
    default:
      break;
  }
}

function onPartial(event) {
  const partial = {itemId: event.item_id, confirmed: event.confirmed ?? "",
    tentative: event.tentative ?? "", language: event.language ?? null};
  voiceState.partials.push(partial);
  const bubble = userBubble(event.item_id);
  if (bubble.dataset.final === "1") return;
  const text = bubble.querySelector(".text");
  text.classList.remove("pending");
  text.replaceChildren();
  if (partial.confirmed) text.append(partial.confirmed.trim() + " ");
  if (partial.tentative) {
    const span = document.createElement("span");
    span.className = "tentative";
    span.textContent = partial.tentative.trim();
    text.append(span);
  }
  const caret = document.createElement("span");
  caret.className = "caret";
  text.append(caret);
  if (partial.language) setLanguageTag(bubble, partial.language, "live");
}

function onTranscript(event) {
  const record = {itemId: event.item_id, text: event.transcript ?? "",
    language: event.language ?? null, languageProbability: event.language_probability ?? null};
  voiceState.transcripts.push(record);
  const bubble = userBubble(event.item_id);
  bubble.dataset.final = "1";
  const text = bubble.querySelector(".text");
  text.replaceChildren();
  text.removeAttribute("data-testid");
  if (record.text.trim()) {
    text.textContent = record.text.trim();
    text.classList.remove("pending");
    text.setAttribute("data-testid", "final-transcript");
    if (record.language) {
      setLanguageTag(bubble, record.language, "");
      voiceState.language = record.language;
      $("language").textContent = `${languageName(record.language)} (${record.language})`;
      $("language-detail").textContent = record.languageProbability === null ? ""
        : `probability ${Math.round(record.languageProbability * 100)}%`;
    }
  } else {
    text.textContent = "(nothing intelligible heard — no reply)";
    text.classList.add("pending");
    text.setAttribute("data-testid", "empty-transcript");
    if (voiceState.activity === "thinking") setActivity("listening");
  }
}

function onResponseCreated(response) {
  const turn = {
    responseId: response.id, itemId: null, userItemId: lastUserItemId, status: "in_progress",
    language: response.language ?? null, text: "", audioSamples: 0, latency: null,
    statusReason: null, speechStoppedAt, firstAudioAt: null, clientFirstAudioMs: null,
    interruptedAtMs: null,
  };
  voiceState.turns.push(turn);
  turnsById.set(turn.responseId, turn);
  const item = document.createElement("li");
  item.className = "msg assistant";
  item.dataset.responseId = turn.responseId;
  item.setAttribute("data-testid", "reply");
  item.innerHTML = `<div class="meta"><span class="who">Assistant</span><span class="tags"></span></div>
    <div class="text pending" data-testid="reply-text"></div>
    <div class="latency" data-testid="latency-report" hidden></div>`;
  turn.element = item;
  appendMessage(item);
  renderTurn(turn);
}

function onResponseDone(response) {
  const turn = turnsById.get(response.id);
  if (!turn) return;
  turn.status = response.status;
  turn.statusReason = response.status_details ? response.status_details.reason : null;
  turn.language = response.language ?? turn.language;
  turn.latency = response.latency ?? null;
  if (!turn.text && response.output && response.output[0]) {
    const content = response.output[0].content || [];
    turn.text = content.map((c) => c.transcript || c.text || "").join("");
  }
  renderTurn(turn);
  $("turn-count").textContent = String(voiceState.turns.filter((t) => t.latency).length);
  if (turn.latency && turn.latency.first_audio_sent_ms !== undefined) {
    $("last-latency").textContent = `${Math.round(turn.latency.first_audio_sent_ms)} ms`;
  }
  if (player.sources.size === 0 && voiceState.activity === "thinking") setActivity("listening");
}

function onError(error) {
  addError(error.code || error.type || "error", error.message || "(no message)", error.type);
}

// -- rendering ---------------------------------------------------------------------------------

const LANGUAGES = {en: "English", de: "German", fr: "French", es: "Spanish", it: "Italian",
  nl: "Dutch", pt: "Portuguese", pl: "Polish"};

function languageName(code) {
  return LANGUAGES[code] || code;
}

function appendMessage(element) {
  const list = $("conversation");
  const hint = $("empty-hint");
  if (hint) hint.remove();
  list.append(element);
  element.scrollIntoView({block: "nearest"});
}

function userBubble(itemId) {
  let bubble = userBubbles.get(itemId);
  if (bubble) return bubble;
  bubble = document.createElement("li");
  bubble.className = "msg user";
  bubble.dataset.itemId = itemId;
  bubble.setAttribute("data-testid", "user-turn");
  bubble.innerHTML = `<div class="meta"><span class="who">You</span><span class="tags"></span></div>
    <div class="text pending" data-testid="partial-transcript">listening…<span class="caret"></span></div>`;
  userBubbles.set(itemId, bubble);
  appendMessage(bubble);
  return bubble;
}

function setLanguageTag(bubble, language, kind) {
  const tags = bubble.querySelector(".tags");
  tags.replaceChildren();
  const tag = document.createElement("span");
  tag.className = `tag ${kind}`;
  tag.textContent = language;
  tag.title = languageName(language);
  tags.append(tag);
}

function renderTurn(turn) {
  const item = turn.element;
  if (!item) return;
  const text = item.querySelector(".text");
  text.replaceChildren();
  if (turn.text && turn.interruptedAtMs !== null && turn.audioSamples > 0) {
    // Roughly what was heard: the share of words matching the share of audio played.
    text.classList.remove("pending");
    const words = turn.text.trim().split(/\s+/);
    const share = Math.min(1, turn.interruptedAtMs / ((turn.audioSamples / RATE) * 1000));
    const keep = Math.floor(words.length * share);
    text.append(words.slice(0, keep).join(" "));
    if (keep < words.length) {
      const rest = document.createElement("span");
      rest.className = "unheard";
      rest.title = "not played (estimated)";
      rest.textContent = (keep ? " " : "") + words.slice(keep).join(" ");
      text.append(rest);
    }
  } else if (turn.text) {
    text.classList.remove("pending");
    text.append(turn.text.trim());
  } else if (turn.status === "in_progress") {
    text.classList.add("pending");
    text.append("thinking…");
  }
  if (turn.status === "in_progress") {
    const caret = document.createElement("span");
    caret.className = "caret";
    text.append(caret);
  }
  const tags = item.querySelector(".tags");
  tags.replaceChildren();
  if (turn.language) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = turn.language;
    tag.title = languageName(turn.language);
    tags.append(tag);
  }
  if (turn.interruptedAtMs !== null || turn.status === "cancelled") {
    const tag = document.createElement("span");
    tag.className = "tag warn";
    tag.textContent = turn.interruptedAtMs !== null
      ? `interrupted at ${(turn.interruptedAtMs / 1000).toFixed(1)} s` : "cancelled";
    tags.append(tag);
  }
  if (turn.status === "failed") {
    const tag = document.createElement("span");
    tag.className = "tag warn";
    tag.textContent = "failed";
    tags.append(tag);
  }
  if (turn.latency) renderLatency(item.querySelector(".latency"), turn);
}

const STAGES = [
  ["vad_ms", "vad", "end of speech"],
  ["transcript_ms", "asr", "transcript"],
  ["llm_first_token_ms", "llm", "first token"],
  ["first_audio_ready_ms", "tts", "audio ready"],
  ["first_audio_sent_ms", "net", "audio sent"],
];

function renderLatency(element, turn) {
  const latency = turn.latency;
  element.hidden = false;
  element.replaceChildren();
  const known = STAGES.filter(([key]) => typeof latency[key] === "number");
  const total = Math.max(1, ...known.map(([key]) => latency[key]));
  const bar = document.createElement("div");
  bar.className = "bar";
  let previous = 0;
  for (const [key, css] of known) {
    const value = Math.max(previous, latency[key]);
    const segment = document.createElement("span");
    segment.className = css;
    segment.style.width = `${((value - previous) / total) * 100}%`;
    segment.title = `${key}: ${latency[key]} ms`;
    bar.append(segment);
    previous = value;
  }
  const figures = document.createElement("div");
  figures.className = "figures";
  for (const [key, , label] of STAGES) {
    const figure = document.createElement("span");
    figure.dataset.key = key;
    const value = typeof latency[key] === "number" ? `${Math.round(latency[key])} ms` : "—";
    figure.innerHTML = `${label} <b></b>`;
    figure.querySelector("b").textContent = value;
    figures.append(figure);
  }
  const caption = document.createElement("div");
  caption.textContent = "Latency from the end of your speech (server clock)";
  element.append(caption, bar, figures);
  if (turn.clientFirstAudioMs !== null) {
    const client = document.createElement("div");
    client.className = "client-latency";
    client.dataset.key = "client_first_audio_ms";
    client.innerHTML = "In this browser the reply started playing <b></b> after the server "
      + "signalled the end of your speech.";
    client.querySelector("b").textContent = `${turn.clientFirstAudioMs} ms`;
    element.append(client);
  }
}

function setConnection(state, label) {
  voiceState.connection = state;
  const pill = $("connection");
  pill.dataset.state = state;
  $("connection-label").textContent = label;
}

const ACTIVITY_TEXT = {
  idle: "Press Start and allow the microphone.",
  connecting: "Connecting…",
  listening: "Listening — go ahead and speak.",
  "speaking-user": "Hearing you…",
  thinking: "Thinking…",
  "speaking-assistant": "Speaking — talk over it to interrupt.",
};

function setActivity(activity) {
  voiceState.activity = activity;
  const element = $("activity");
  element.dataset.activity = activity;
  element.textContent = ACTIVITY_TEXT[activity];
}

function addError(code, message, type) {
  voiceState.errors.push({code, message, type: type ?? null});
  const card = $("errors-card");
  card.hidden = false;
  const item = document.createElement("li");
  item.setAttribute("data-testid", "error");
  const codeElement = document.createElement("code");
  codeElement.textContent = code;
  item.append(codeElement, message);
  $("errors").append(item);
}

function setButton(mode) {
  const button = $("start");
  button.disabled = mode === "busy";
  button.classList.toggle("stop", mode === "stop");
  $("start-label").textContent = mode === "stop" ? "Stop" : mode === "busy" ? "Starting…" : "Start";
  button.dataset.mode = mode;
}

// -- start and stop ----------------------------------------------------------------------------

async function startAudio() {
  if (!navigator.mediaDevices || !window.isSecureContext) {
    throw new Error("browsers allow the microphone only on https:// or http://localhost pages; "
      + "open this page through localhost (e.g. an SSH tunnel) or an HTTPS proxy");
  }
  const stream = await navigator.mediaDevices.getUserMedia({audio: {
    channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true,
  }});
  const ctx = new AudioContext({latencyHint: "interactive"});
  await ctx.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
  const source = ctx.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(ctx, "capture-processor", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: {targetRate: RATE, chunkMs: 20},
  });
  node.port.onmessage = (message) => onMicChunk(message.data);
  // A muted sink keeps the worklet pulled without sending the microphone to the speakers.
  const sink = ctx.createGain();
  sink.gain.value = 0;
  source.connect(node).connect(sink).connect(ctx.destination);
  if (ctx.state !== "running") await ctx.resume();
  audio = {ctx, stream, source, node, sink};
  $("audio-detail").textContent = `microphone at ${ctx.sampleRate / 1000} kHz, resampled here`;
}

async function stopAudio() {
  stopPlayback();
  const current = audio;
  audio = null;
  pendingAudio = [];
  $("level").style.width = "0";
  if (!current) return;
  current.node.port.postMessage("stop");
  current.source.disconnect();
  current.node.disconnect();
  for (const track of current.stream.getTracks()) track.stop();
  await current.ctx.close().catch(() => {});
}

async function start() {
  setButton("busy");
  setActivity("connecting");
  setConnection("connecting", "Connecting…");
  try {
    await startAudio();
  } catch (error) {
    setConnection("error", "No microphone");
    addError("microphone", `The microphone is not available: ${error.message || error}`);
    setActivity("idle");
    setButton("start");
    return;
  }
  try {
    await connect($("api-key").value.trim());
    setButton("stop");
  } catch (error) {
    addError("connection_failed", error.message || String(error));
    await stopAudio();
    setActivity("idle");
    setButton("start");
  }
}

async function stop() {
  const socket = ws;
  ws = null;
  sessionReady = false;
  if (socket) socket.close(1000, "bye");
  await stopAudio();
  setConnection("closed", "Disconnected");
  setActivity("idle");
  setButton("start");
}

async function loadHealth() {
  try {
    const response = await fetch("/healthz", {cache: "no-store"});
    if (!response.ok) return;
    const health = await response.json();
    const models = health.models || {};
    $("models").textContent = [models.asr, models.llm, models.voice].filter(Boolean).join(" · ");
  } catch { /* the page still works without it */ }
}

// For tests and demos: mix an audio file (WAV, MP3, ... bytes) into the microphone input, e.g. to
// speak over a reply at a chosen moment. Resolves when the sound has been played in.
async function mixIntoMicrophone(bytes) {
  if (!audio) throw new Error("not started");
  const buffer = await audio.ctx.decodeAudioData(bytes);
  const source = audio.ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.node);
  await new Promise((resolve) => {
    source.onended = resolve;
    source.start();
  });
  source.disconnect();
}

window.voiceDebug = {
  playedMs: () => Math.round(playedMs()),
  isPlaying: () => player.sources.size > 0,
  mixIntoMicrophone,
};

function init() {
  const key = params.get("key");
  if (key) $("api-key").value = key;
  $("endpoint").textContent = websocketUrl("", false);
  $("audio-format").textContent = `PCM16 ${RATE / 1000} kHz`;
  $("audio-detail").textContent = BINARY ? "binary frames" : "base64 events";
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault(); // Start / Stop, also Enter in the key field
    const mode = $("start").dataset.mode;
    if (mode === "stop") stop();
    else if (mode === "start") start();
  });
  setButton("start");
  loadHealth();
}

init();
