// The wire side of the page: session settings from the page URL, the websocket URL and how the
// API key travels, and the PCM16 <-> base64 conversions of the OpenAI Realtime audio events.

export const SUPPORTED_RATES = [16000, 24000, 48000];

export const params = new URLSearchParams(location.search);
export const RATE = SUPPORTED_RATES.includes(Number(params.get("rate")))
  ? Number(params.get("rate")) : 24000;
export const BINARY = params.get("binary") === "1";

// The server's latency report (response.done's `latency`): [key, css class, label], in order.
export const STAGES = [
  ["vad_ms", "vad", "end of speech"],
  ["transcript_ms", "asr", "transcript"],
  ["llm_first_token_ms", "llm", "first token"],
  ["first_audio_ready_ms", "tts", "audio ready"],
  ["first_audio_sent_ms", "net", "audio sent"],
];

export function base64FromBytes(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function floatsFromBase64Pcm16(b64) {
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

export function websocketUrl(key, inQuery) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(`${scheme}//${location.host}/v1/realtime`);
  if (inQuery && key) url.searchParams.set("api_key", key);
  return url.toString();
}

export function openSocket(key) {
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
