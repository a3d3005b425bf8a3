// Rendering: the conversation's bubbles (user turns, replies with their latency bars), the
// status pill, the activity line, the start button, the microphone meter and the errors card.
// Each setter also records what it shows in voiceState.

import {RATE, STAGES} from "./protocol.js";
import {voiceState} from "./state.js";

export const $ = (id) => document.getElementById(id);

const userBubbles = new Map();

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

export function userBubble(itemId) {
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

// A user turn's live transcript: confirmed words, then the tentative tail, then a caret.
export function showPartial(partial) {
  const bubble = userBubble(partial.itemId);
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

// A user turn's final transcript, and its language in the summary.
export function showTranscript(record) {
  const bubble = userBubble(record.itemId);
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
      $("language").textContent = `${languageName(record.language)} (${record.language})`;
      $("language-detail").textContent = record.languageProbability === null ? ""
        : `probability ${Math.round(record.languageProbability * 100)}%`;
    }
  } else {
    text.textContent = "(nothing intelligible heard — no reply)";
    text.classList.add("pending");
    text.setAttribute("data-testid", "empty-transcript");
  }
}

// A reply's bubble (kept as turn.element for renderTurn).
export function addTurnElement(turn) {
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

// The summary after a finished reply: answered turns, and the last reply's latency.
export function showTurnSummary(turn) {
  $("turn-count").textContent = String(voiceState.turns.filter((t) => t.latency).length);
  if (turn.latency && turn.latency.first_audio_sent_ms !== undefined) {
    $("last-latency").textContent = `${Math.round(turn.latency.first_audio_sent_ms)} ms`;
  }
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

export function renderTurn(turn) {
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
  if (turn.resumes) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "resumed";
    tag.title = "goes on after a false interruption (noise)";
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

export function setConnection(state, label) {
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

export function setActivity(activity) {
  voiceState.activity = activity;
  const element = $("activity");
  element.dataset.activity = activity;
  element.textContent = ACTIVITY_TEXT[activity];
}

export function addError(code, message, type) {
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

export function setButton(mode) {
  const button = $("start");
  button.disabled = mode === "busy";
  button.classList.toggle("stop", mode === "stop");
  $("start-label").textContent = mode === "stop" ? "Stop" : mode === "busy" ? "Starting…" : "Start";
  button.dataset.mode = mode;
}

export function showMicLevel(peak) {
  $("level").style.width = `${Math.min(100, Math.round(Math.sqrt(peak) * 100))}%`;
}

export function clearMicLevel() {
  $("level").style.width = "0";
}
