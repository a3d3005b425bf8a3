// Reply playback: chunks are scheduled gap-free as AudioBufferSourceNodes at a running time
// cursor, so that playedMs() can say how much of the current item was heard at a barge-in.

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
  chunks: [], // {start, duration} of the current item, AudioContext seconds
};

export function playChunk(turn, samples) {
  const ctx = audio.ctx;
  if (player.itemId !== turn.itemId) {
    if (player.gain) player.gain.gain.value = 1; // a new reply plays at full volume
    player.itemId = turn.itemId;
    player.responseId = turn.responseId;
    player.chunks = [];
  }
  const buffer = ctx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(outputNode(ctx));
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
  for (const source of player.sources) {
    source.onended = null;
    try { source.stop(); } catch { /* already stopped */ }
  }
  player.sources.clear();
  if (player.gain) player.gain.gain.value = 1;
  player.cursor = 0;
  player.chunks = [];
  player.itemId = null;
  player.responseId = null;
}
