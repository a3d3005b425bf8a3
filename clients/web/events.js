// Server events -> the page: turns and transcripts in voiceState, the bubbles, the reply audio,
// and barge-in: on `input_audio_buffer.speech_started` playback stops at once and, if a reply
// was audible, `conversation.item.truncate` tells the server how much of it was played.

import {audio} from "./audio.js";
import {
  duckPlayback, heldMs, holdPlayback, player, playChunk, playedMs, releasePlayback, stopPlayback,
} from "./player.js";
import {floatsFromBase64Pcm16} from "./protocol.js";
import {markSessionReady, send} from "./socket.js";
import {voiceState} from "./state.js";
import {
  addError, addTurnElement, renderTurn, setActivity, showPartial, showTranscript, showTurnSummary,
  userBubble,
} from "./view.js";

let lastUserItemId = null;
let speechStoppedAt = null; // performance.now() of the latest speech_stopped
const interrupted = new Set(); // response ids whose audio must not be played any more
const turnsById = new Map();

export function onEvent(event) {
  switch (event.type) {
    case "session.created":
      voiceState.sessionId = event.session && event.session.id;
      break;
    case "session.updated":
      voiceState.interruption = event.session?.interruption ?? null;
      if (markSessionReady()) setActivity("listening");
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
    case "input_audio_buffer.backchannel":
      // "mhm" over the reply: it goes on, no turn started (docs/protocol.md).
      voiceState.backchannels.push({transcript: event.transcript, language: event.language});
      break;
    case "output_audio_buffer.duck":
      // A sound over the reply is being judged: paused (the page asks for a hold), or
      // quieter, until it is known (docs/protocol.md).
      if (event.response_id === player.responseId) {
        if (event.hold) holdPlayback(); else duckPlayback(event.gain_db);
      }
      voiceState.ducks.push({responseId: event.response_id, gainDb: event.gain_db,
        hold: Boolean(event.hold), playedMs: Math.round(playedMs())});
      break;
    case "output_audio_buffer.unduck":
      if (event.response_id === player.responseId) {
        releasePlayback();
        duckPlayback(0);
      }
      break;
    case "response.resumed": {
      // A false interruption (a cough): the reply goes on from the word where it stopped.
      const turn = turnsById.get(event.response_id);
      if (turn) {
        turn.resumes = event.resumed_response_id;
        renderTurn(turn);
      }
      break;
    }
    case "error":
      onError(event.error || {});
      break;
    default:
      break;
  }
}

function bargeIn() {
  // The user speaks: silence the reply at once; tell the server how much of it was heard.
  const active = voiceState.turns.filter((t) => t.status === "in_progress");
  for (const turn of active) interrupted.add(turn.responseId);
  if (player.sources.size === 0 && !player.held) return;
  const itemId = player.itemId;
  const responseId = player.responseId;
  const total = player.chunks.reduce((sum, c) => sum + c.duration, 0) * 1000 + heldMs();
  const played = Math.floor(playedMs());
  const playing = player.sources.size;
  const held = player.held;
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
      playingSources: playing, held, sourcesAfter: player.sources.size});
  }
}

function onPartial(event) {
  const partial = {itemId: event.item_id, confirmed: event.confirmed ?? "",
    tentative: event.tentative ?? "", language: event.language ?? null};
  voiceState.partials.push(partial);
  showPartial(partial);
}

function onTranscript(event) {
  const record = {itemId: event.item_id, text: event.transcript ?? "",
    language: event.language ?? null, languageProbability: event.language_probability ?? null};
  voiceState.transcripts.push(record);
  showTranscript(record);
  if (record.text.trim()) {
    if (record.language) voiceState.language = record.language;
  } else if (voiceState.activity === "thinking") {
    setActivity("listening");
  }
}

function onResponseCreated(response) {
  const turn = {
    responseId: response.id, itemId: null, userItemId: lastUserItemId, status: "in_progress",
    language: response.language ?? null, text: "", audioSamples: 0, latency: null,
    statusReason: null, speechStoppedAt, firstAudioAt: null, clientFirstAudioMs: null,
    interruptedAtMs: null, resumes: null,
  };
  voiceState.turns.push(turn);
  turnsById.set(turn.responseId, turn);
  addTurnElement(turn);
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
  showTurnSummary(turn);
  if (player.sources.size === 0 && voiceState.activity === "thinking") setActivity("listening");
}

function onError(error) {
  addError(error.code || error.type || "error", error.message || "(no message)", error.type);
}
