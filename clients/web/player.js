// Reply playback: chunks are scheduled gap-free as AudioBufferSourceNodes at a running time
// cursor, so that playedMs() can say how much of the current item was heard at a barge-in.
// A hold (output_audio_buffer.duck with hold) stops them where they are and keeps the rest,
// which releasePlayback() schedules again: the reply goes on from where it paused.

import {audio} from "./audio.js";
import {RATE} from "./protocol.js";
import {voiceState} from "./state.js";
import {setActivity} from "./view.js";

const PLAYBACK_LEAD_S = 0.06; // schedule the first chunk of a burst this far ahead

export const player = {
  cursor: 0,
  sources: new Set(),
  itemId: null, // the assistant item being played
  gain: null, // GainNode that all reply audio goes through (ducking)
  responseId: null,
  chunks: [], // {start, duration, samples} of the current item, AudioContext seconds
  held: false, // paused while the server judges a sound over the reply
  heldSamples: [], // what is left to play once released, in order
};

export function playChunk(turn, samples) {
  if (player.itemId !== turn.itemId) {
    if (player.gain) player.gain.gain.value = 1; // a new reply plays at full volume
    player.itemId = turn.itemId;
    player.responseId = turn.responseId;
    player.chunks = [];
    player.held = false;
    player.heldSamples = [];
  }
  if (player.held) {
    player.heldSamples.push(samples);
    return;
  }
  schedule(samples, turn);
}

function schedule(samples, turn) {
  const ctx = audio.ctx;
  const buffer = ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(outputNode(ctx));
  const now = ctx.currentTime;
  if (player.cursor < now + 0.005) player.cursor = now + PLAYBACK_LEAD_S; // start or underrun
  source.start(player.cursor);
  if (turn && turn.firstAudioAt === null) {
    turn.firstAudioAt = performance.now() + (player.cursor - now) * 1000;
    const outputDelay = (ctx.outputLatency || 0) + (ctx.baseLatency || 0);
    if (turn.speechStoppedAt !== null) {
      turn.clientFirstAudioMs = Math.round(turn.firstAudioAt - turn.speechStoppedAt
        + outputDelay * 1000);
    }
  }
  player.chunks.push({start: player.cursor, duration: buffer.duration, samples});
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

// Reply audio goes through one gain node, so that a duck (output_audio_buffer.duck) lowers
// what is playing now and what is scheduled after it alike.
function outputNode(ctx) {
  if (!player.gain || player.gain.context !== ctx) {
    player.gain = ctx.createGain();
    player.gain.connect(ctx.destination);
  }
  return player.gain;
}

export function duckPlayback(gainDb) {
  if (!audio) return;
  const node = outputNode(audio.ctx);
  node.gain.setTargetAtTime(Math.pow(10, gainDb / 20), audio.ctx.currentTime, 0.01);
}

// Pause the reply where it is; what is left (and what arrives meanwhile) waits.
export function holdPlayback() {
  if (!audio || player.held) return;
  const now = audio.ctx.currentTime;
  const rest = [];
  for (const chunk of player.chunks) {
    const played = Math.min(Math.max(now - chunk.start, 0), chunk.duration);
    const left = chunk.samples.subarray(Math.min(chunk.samples.length, Math.round(played * RATE)));
    if (played < chunk.duration && left.length > 0) {
      rest.push(left);
      chunk.duration = played;
    }
  }
  silenceSources();
  player.cursor = 0;
  player.held = true;
  player.heldSamples = rest;
}

// Go on from where the hold paused it.
export function releasePlayback() {
  if (!audio || !player.held) return;
  const rest = player.heldSamples;
  player.held = false;
  player.heldSamples = [];
  for (const samples of rest) schedule(samples, null);
}

export function heldMs() {
  return player.heldSamples.reduce((sum, s) => sum + s.length, 0) / RATE * 1000;
}

function silenceSources() {
  for (const source of player.sources) {
    source.onended = null;
    try { source.stop(); } catch { /* already stopped */ }
  }
  player.sources.clear();
}

export function playedMs() {
  if (!audio) return 0;
  const now = audio.ctx.currentTime;
  let played = 0;
  for (const chunk of player.chunks) {
    played += Math.min(Math.max(now - chunk.start, 0), chunk.duration);
  }
  return played * 1000;
}

export function stopPlayback() {
  silenceSources();
  player.held = false;
  player.heldSamples = [];
  if (player.gain) player.gain.gain.value = 1;
  player.cursor = 0;
  player.chunks = [];
  player.itemId = null;
  player.responseId = null;
}
