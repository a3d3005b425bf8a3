// The page's AudioContext: microphone capture through the AudioWorklet (capture-worklet.js,
// which resamples to the session rate and makes PCM16), also the context replies play in.

import {RATE} from "./protocol.js";
import {$} from "./view.js";

export let audio = null; // {ctx, stream, source, node, sink} while started

export async function startAudio(onChunk) {
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
  node.port.onmessage = (message) => onChunk(message.data);
  // A muted sink keeps the worklet pulled without sending the microphone to the speakers.
  const sink = ctx.createGain();
  sink.gain.value = 0;
  source.connect(node).connect(sink).connect(ctx.destination);
  if (ctx.state !== "running") await ctx.resume();
  // Whether the browser really applies its echo cancellation and noise suppression (asked for
  // above): on laptop speakers the reply must not come back as the user talking.
  const settings = stream.getAudioTracks()[0]?.getSettings?.() ?? {};
  audio = {ctx, stream, source, node, sink, echoCancelled: settings.echoCancellation === true};
  const onOff = (value) => (value ? "on" : "off");
  $("audio-detail").textContent = `microphone at ${ctx.sampleRate / 1000} kHz, resampled here; `
    + `echo cancellation ${onOff(settings.echoCancellation)}, `
    + `noise suppression ${onOff(settings.noiseSuppression)}`;
}

// Releases the microphone and closes the context (callers stop the playback first).
export async function closeAudio() {
  const current = audio;
  audio = null;
  if (!current) return;
  current.node.port.postMessage("stop");
  current.source.disconnect();
  current.node.disconnect();
  for (const track of current.stream.getTracks()) track.stop();
  await current.ctx.close().catch(() => {});
}

// For tests and demos: mix an audio file (WAV, MP3, ... bytes) into the microphone input, e.g. to
// speak over a reply at a chosen moment. Resolves when the sound has been played in.
export async function mixIntoMicrophone(bytes) {
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
