// What the page saw, in one object: app.js exposes it as window.voiceState (for tests and
// curious users); the other modules update it.

import {RATE} from "./protocol.js";

export const voiceState = {
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
  backchannels: [], // said over a reply without interrupting it: {transcript, language}
  ducks: [], // output_audio_buffer.duck events: {responseId, gainDb}
  interruption: null, // the session's interruption settings, as session.updated shows them
  replyAudioSamples: 0,
  sentAudioMs: 0,
  events: 0,
  errors: [], // {code, message, type}
};
