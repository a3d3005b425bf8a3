// The websocket to /v1/realtime: connecting (and explaining a refusal), sending client events,
// and sending microphone audio, queued while the session is being set up.

import {audio} from "./audio.js";
import {base64FromBytes, BINARY, openSocket, RATE} from "./protocol.js";
import {voiceState} from "./state.js";
import {setConnection} from "./view.js";

const MAX_PENDING_CHUNKS = 250; // mic audio kept while the session is set up (5 s)

let ws = null;
let sessionReady = false;
let pendingAudio = [];
let clientEventSeq = 0;

export function send(event) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  clientEventSeq += 1;
  ws.send(JSON.stringify({event_id: `event_web_${clientEventSeq}`, ...event}));
}

function sendAudio(pcm) {
  if (!pcm.byteLength) return;  // the server refuses an empty append
  if (BINARY) ws.send(pcm);
  else send({type: "input_audio_buffer.append", audio: base64FromBytes(new Uint8Array(pcm))});
  voiceState.sentAudioMs += (pcm.byteLength / 2 / RATE) * 1000;
}

// A chunk of microphone PCM16: sent, or kept (the latest 5 s) until the session is ready.
export function sendMicAudio(pcm) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !sessionReady) {
    pendingAudio.push(pcm);
    if (pendingAudio.length > MAX_PENDING_CHUNKS) pendingAudio.shift();
    return;
  }
  sendAudio(pcm);
}

export function dropPendingAudio() {
  pendingAudio = [];
}

// On the first session.updated: sends the queued audio; true the first time only.
export function markSessionReady() {
  if (sessionReady) return false;
  sessionReady = true;
  const queued = pendingAudio;
  pendingAudio = [];
  for (const pcm of queued) sendAudio(pcm);
  return true;
}

// Opens the session; resolves once connected, rejects (with the reason) when refused.
// onEvent(event) gets each server event; onDropped(close) is awaited when a connected socket is
// closed by the server or the network (not by disconnect()).
export function connect(key, {onEvent, onDropped}) {
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
        // Pause the reply while a sound over it is judged; on from there if it was no
        // interruption. With the browser's echo cancellation on, a voice as loud as the
        // user's pauses it in its first moments too (docs/protocol.md, "Speech over a reply").
        interruption: {hold: true, echo_cancelled: Boolean(audio?.echoCancelled)},
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
      await onDropped(close);
    };
  });
}

// Closes the session from this side (Stop): no onDropped.
export function disconnect() {
  const socket = ws;
  ws = null;
  sessionReady = false;
  if (socket) socket.close(1000, "bye");
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
