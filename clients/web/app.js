// The browser client: microphone -> websocket (OpenAI Realtime events) -> speakers.
//
// This entry point wires the modules and the Start / Stop button:
//   protocol.js  session settings from the URL, websocket URL and key, PCM16 <-> base64
//   state.js     voiceState, what the page saw
//   audio.js     the AudioContext and microphone capture (through capture-worklet.js)
//   player.js    reply playback, scheduled gap-free, and how much of it was played
//   socket.js    the websocket: connect, send, microphone audio queued until the session is set up
//   events.js    server events -> turns, transcripts, playback and barge-in
//   view.js      rendering: bubbles, latency bars, status, activity, errors
//
// window.voiceState exposes what the page saw (for tests and curious users).

import {audio, closeAudio, mixIntoMicrophone, startAudio} from "./audio.js";
import {onEvent} from "./events.js";
import {player, playedMs, stopPlayback} from "./player.js";
import {BINARY, params, RATE, websocketUrl} from "./protocol.js";
import {connect, disconnect, dropPendingAudio, sendMicAudio} from "./socket.js";
import {voiceState} from "./state.js";
import {
  $, addError, clearMicLevel, setActivity, setButton, setConnection, showMicLevel,
} from "./view.js";

window.voiceState = voiceState;

function onMicChunk({pcm, peak}) {
  showMicLevel(peak);
  sendMicAudio(pcm);
}

async function stopAudio() {
  stopPlayback();
  dropPendingAudio();
  clearMicLevel();
  await closeAudio();
}

// The server (or the network) closed a connected session, not Stop.
async function onDropped(close) {
  if (!audio) return;
  const detail = close.code === 1000 ? "" : ` (code ${close.code}${close.reason ? `: ${close.reason}` : ""})`;
  setConnection(close.code === 1000 ? "closed" : "error", `Disconnected${detail}`);
  if (close.code !== 1000) addError("connection_closed", `The server closed the session${detail}.`);
  await stopAudio();
  setButton("start");
}

async function start() {
  setButton("busy");
  setActivity("connecting");
  setConnection("connecting", "Connecting…");
  try {
    await startAudio(onMicChunk);
  } catch (error) {
    setConnection("error", "No microphone");
    addError("microphone", `The microphone is not available: ${error.message || error}`);
    setActivity("idle");
    setButton("start");
    return;
  }
  try {
    await connect($("api-key").value.trim(), {onEvent, onDropped});
    setButton("stop");
  } catch (error) {
    addError("connection_failed", error.message || String(error));
    await stopAudio();
    setActivity("idle");
    setButton("start");
  }
}

async function stop() {
  disconnect();
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

window.voiceDebug = {
  playedMs: () => Math.round(playedMs()),
  isPlaying: () => player.sources.size > 0 || player.held,
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
