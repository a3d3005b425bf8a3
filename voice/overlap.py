"""What someone said over the assistant's reply: its own echo, a backchannel, or the user.

Pure functions, no I/O. The session transcribes speech that starts while a reply is audible
and asks :func:`judge` what it is, given the words of the reply that were playing around that
moment and whether the sound :func:`follows` the reply's loudness (an echo rises and falls
with the reply, a little later; a voice of its own does not):

- :attr:`Verdict.ECHO`: mostly the reply's own words (the microphone hears the speakers);
- :attr:`Verdict.BACKCHANNEL`: only short acknowledgements ("mhm", "yeah", "genau",
  "d'accord", "vale", "ja hoor", "tak", ...), at most :data:`BACKCHANNEL_MAX_WORDS` words;
- :attr:`Verdict.USER`: words of the user's own (or a stop word such as "stop", "warte",
  "arrête", heard even inside echo): an interruption. :attr:`Judgement.sure` says whether one
  look is enough: a stop word, or at least :data:`SURE_WORDS` words of the user's own; one or
  two words may be a misheard echo (whisper hears "Berlin" coming back from the room as "for
  one"), so the session waits for a second look that agrees;
- :attr:`Verdict.NOTHING`: no words (noise, a cough, a door).

Speech recognition alone cannot tell: a reverberant echo of "Berlin is a city" comes back as
"For one is a city". The loudness contours can: on simulated laptop rooms (20-200 ms, 6-20 dB,
``sox reverb``) the echo's contour correlates 0.7-0.95 with the reply's, a voice talking over
it (with or without echo cancelling) 0.25-0.5 (``docs/benchmarks.md``, "Full duplex").

Words are compared after folding case, punctuation and diacritics, so "Sí." is "si" and
"D'accord !" is "daccord". Echo words are matched fuzzily (speech recognition of a reverberant
echo gets words slightly wrong), and numbers both ways: the reply writes "1.5 billion" and
speaks "one point five billion", whose echo whisper may write either way.
"""

from __future__ import annotations

import enum
import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from num2words import num2words
from rapidfuzz import fuzz

BACKCHANNEL_MAX_WORDS = 4
# A word of the transcript is the reply's echo when it is this similar (0-100) to one of the
# reply's words around the playback position; words of up to 3 letters must match exactly.
ECHO_SIMILARITY = 75
# Share of the transcript's words that must be neither echo nor backchannel for it to count
# as the user's own speech (a reverberant echo transcribes with a few wrong words).
USER_SHARE = 0.34
SURE_WORDS = 3  # words of the user's own that make one look enough
# A transcript of at least ECHO_PHRASE_MIN_WORDS words, fewer than half of them its own, that
# matches a stretch of the reply's words this closely (0-100, as one string) is echo:
# "the eye foot tower and the lune museum" for "the Eiffel Tower and the Louvre Museum" (82,
# 3 of 8 words its own; people's own words over that reply scored 46-50). A question about
# the reply's own words may match as closely, but has more words of its own.
ECHO_PHRASE_SIMILARITY = 80
ECHO_PHRASE_MIN_WORDS = 4
ECHO_PHRASE_USER_SHARE = 0.5
SHORT_MS = 800  # speech over the reply this short is taken for an interruption only if sure
LOUDNESS_HZ = 100  # loudness contours: one value per 10 ms
ECHO_FOLLOWS = 0.6  # correlation of contours above which a sound is the reply's echo
# ... and above which one or two words of its own are taken for a misheard echo too (a voice
# over the reply correlated 0.25-0.5; echo after a user's sound, while the canceller
# re-adapts, ~0.5).
ECHO_FOLLOWS_WEAK = 0.45
ECHO_LAGS_MS = (-100, 600)  # how much later than its estimated playback an echo may come
SILENT = -7.0  # the loudness of silence (log10 of the floor added to the mean power)
FLAT = 1.0  # a contour spanning less than this (10 dB) has no shape to follow

_HUMS = ("mhm", "mm", "mmm", "hm", "hmm", "mmhmm", "mhmm", "uhhuh", "uhhum", "aha", "ah", "oh",
         "uh", "um", "ok", "okay", "oke")

# Acknowledgements per language, as phrases of folded words. A transcript is a backchannel
# when it is a sequence of these (in the transcript's language, the reply's or English).
BACKCHANNELS: dict[str, tuple[str, ...]] = {
    "en": ("yeah", "yes", "yep", "yup", "right", "sure", "alright", "all right", "i see",
           "got it", "cool", "nice", "great", "uh huh", "mm hmm", "oh okay", "exactly",
           "true", "indeed", "fine", "good"),
    "de": ("ja", "jaja", "genau", "richtig", "stimmt", "klar", "gut", "ach so", "achso",
           "jawohl", "okay", "alles klar", "verstehe", "aha", "ja genau", "naja", "sicher",
           "prima", "super"),
    "fr": ("oui", "ouais", "daccord", "bon", "voila", "exactement", "bien sur", "cest ca",
           "tout a fait", "entendu", "parfait", "ah oui", "bien", "super", "je vois", "ok"),
    "es": ("si", "vale", "claro", "aja", "ya", "bien", "exacto", "de acuerdo", "bueno",
           "entiendo", "perfecto", "sin duda", "eso", "ya veo", "muy bien", "cierto"),
    "it": ("si", "certo", "va bene", "esatto", "gia", "giusto", "daccordo", "capito",
           "bene", "perfetto", "chiaro", "ecco", "infatti", "appunto", "ho capito"),
    "nl": ("ja", "ja hoor", "jawel", "oke", "okee", "precies", "klopt", "inderdaad", "goed",
           "prima", "zeker", "helemaal", "aha", "juist", "ik snap het", "snap ik"),
    "pt": ("sim", "ta", "ta bom", "certo", "claro", "e", "pois", "pois e", "exato",
           "exatamente", "uhum", "beleza", "entendi", "isso", "perfeito", "com certeza"),
    "pl": ("tak", "no", "no tak", "aha", "okej", "dobrze", "jasne", "wlasnie", "rozumiem",
           "oczywiscie", "pewnie", "zgadza sie", "no jasne", "dokladnie", "super"),
}

# Words that ask the assistant to stop, per language: an interruption even when echo is heard
# with them. Where the sound follows the reply's (its echo, :data:`ECHO_FOLLOWS`), only those
# of the languages in play (and English) count: whisper makes "Halt" of the echo of "Eiffel"
# and "moment" of an English reply's.
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset({"stop", "wait", "pause", "enough"}),
    "de": frozenset({"halt", "warte", "warten", "moment", "aufhoren", "stopp"}),
    "fr": frozenset({"arrete", "arretez", "attends", "attendez", "stoppe"}),
    "es": frozenset({"para", "parar", "espera", "basta", "alto"}),
    "it": frozenset({"fermati", "aspetta", "ferma", "basta"}),
    "nl": frozenset({"wacht", "ophouden", "moment"}),
    "pt": frozenset({"pare", "espere", "chega", "para", "basta"}),
    "pl": frozenset({"czekaj", "przestan", "zaczekaj", "dosc", "moment"}),
}
ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())
# ... and phrases whose words alone are not: whisper hears the Dutch backchannel "ja hoor" as
# "Yeah hold", which is no request to stop; "hold on" is.
STOP_PHRASES = frozenset({("hold", "on"), ("hold", "it"), ("hang", "on"), ("shut", "up")})


class Verdict(enum.Enum):
    NOTHING = "nothing"
    ECHO = "echo"
    BACKCHANNEL = "backchannel"
    USER = "user"


class Judgement(NamedTuple):
    verdict: Verdict
    sure: bool = True  # for USER: a stop word or SURE_WORDS words of the user's own
    stop: bool = False  # for USER: a stop word (or phrase) was heard


def confirms(judgement: Judgement, previous: Judgement | None, speech_ms: int, *,
             voiced: bool = False) -> bool:
    """Whether a look at speech over the reply (``speech_ms`` long so far) makes it the user's:
    a sure look, or a second look in a row that hears words of the user's once the speech has
    lasted :data:`SHORT_MS` (one or two words heard twice in something shorter are likelier a
    misheard backchannel, "genau" as "und dann taug", than a command without a stop word).
    ``voiced``: ``speech_ms`` is how long a voice stood out of a microphone that was quiet
    during the reply (``voice.ducking``), not the VAD's speech, which may be echo; then one
    look that hears words of the user's is enough once it has lasted :data:`SHORT_MS`, and
    before that only a stop word is (whisper makes three words of a "ja hoor" and the
    reply leaking through the echo canceller after it: "You are the whole."; the reply is
    ducked meanwhile, and the whole speech is judged when it ends)."""
    if judgement.verdict is not Verdict.USER:
        return False
    if voiced:
        return judgement.stop or speech_ms >= SHORT_MS
    if judgement.sure:
        return True
    return previous is not None and previous.verdict is Verdict.USER and speech_ms >= SHORT_MS


def settled(judgement: Judgement, speech_ms: int, *, voiced: bool = False) -> Verdict:
    """The verdict on speech over the reply that stopped (for now) after ``speech_ms``: one
    or two words of the user's, unsure and without a stop word, in under :data:`SHORT_MS`
    are a backchannel (a misheard "mhm" is likelier than a one- or two-word command).
    ``voiced`` (``speech_ms`` is how long a voice stood out, as for :func:`confirms`): so are
    more words without a stop word, in a voice that short. Whisper makes short sentences of a
    "sim" or a "d'accord" and the reply's echo around it ("In the end.", "It's not all."),
    while three words of a request take most people more than 0.8 s to say."""
    if (judgement.verdict is Verdict.USER and not judgement.stop and speech_ms < SHORT_MS
            and (voiced or not judgement.sure)):
        return Verdict.BACKCHANNEL
    return judgement.verdict


def fold(text: str) -> list[str]:
    """The words of ``text``, lowercase, without diacritics, apostrophes or hyphens."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("ł", "l"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"['’`-]", "", plain)
    return re.findall(r"\w+", plain)


def _phrases(languages: Iterable[str]) -> dict[int, set[tuple[str, ...]]]:
    """Backchannel phrases by length in words."""
    by_length: dict[int, set[tuple[str, ...]]] = {}
    for language in {*languages, "en"}:
        for phrase in (*BACKCHANNELS.get(language, ()), *_HUMS):
            words = tuple(phrase.split())
            by_length.setdefault(len(words), set()).add(words)
    return by_length


def is_backchannel(words: list[str], languages: Iterable[str]) -> bool:
    """Whether ``words`` (folded) are only acknowledgements in one of ``languages`` (or
    English, or a hum), and at most :data:`BACKCHANNEL_MAX_WORDS` of them."""
    if not words or len(words) > BACKCHANNEL_MAX_WORDS:
        return False
    phrases = _phrases(languages)
    longest = max(phrases)
    position = 0
    while position < len(words):
        for length in range(min(longest, len(words) - position), 0, -1):
            if tuple(words[position:position + length]) in phrases.get(length, ()):
                position += length
                break
        else:
            return False
    return True


def _spellings(number: str, languages: Iterable[str]) -> list[set[str]]:
    """The ways ``number`` (digits, maybe with one decimal or thousands separator) may be
    spoken in each of ``languages``, as sets of folded words (as a number, each of its digit
    groups, and a year as one)."""
    values: set[int | float] = {int(part) for part in re.split(r"[.,]", number) if part}
    if re.fullmatch(r"\d+[.,]\d+", number):
        values.add(float(number.replace(",", ".")))
        values.add(int(re.sub(r"[.,]", "", number)))  # a thousands separator
    spellings: list[set[str]] = []
    for language in languages:
        for value in values:
            forms = [{}, {"to": "year"}] if isinstance(value, int) and value >= 1000 else [{}]
            for form in forms:
                try:
                    spellings.append(set(fold(num2words(value, lang=language, **form))))
                except (NotImplementedError, OverflowError, ValueError, KeyError):
                    continue  # a language or form num2words does not know
    return spellings


def _number_words(languages: Iterable[str]) -> frozenset[str]:
    """The folded words that spell the numbers 0-100 in ``languages`` or English."""
    return frozenset().union(*(_number_words_in(language) for language in {*languages, "en"}))


@functools.cache
def _number_words_in(language: str) -> frozenset[str]:
    words: set[str] = set()
    for value in range(101):
        try:
            words.update(fold(num2words(value, lang=language)))
        except (NotImplementedError, OverflowError, ValueError, KeyError):
            break  # a language num2words does not know
    return frozenset(words)


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:[.,]\d+)?", text)


def _echo_words(spoken: str, languages: Iterable[str]) -> set[str]:
    """The folded words the reply's echo may be transcribed as: its own (a hyphenated one
    joined and in parts: the reply's "Notre-Dame" comes back as "Notre Dame"), and its
    numbers spelled out."""
    words = set(fold(spoken)) | set(fold(spoken.replace("-", " ")))
    for number in _numbers(spoken):
        words = words.union(*_spellings(number, languages))
    return words


def _is_echo_word(word: str, spoken: set[str], languages: Iterable[str] = ()) -> bool:
    if word in spoken:
        return True
    if word.isdigit():  # the reply's "fifteen", written "15"
        return any(spelling <= spoken for spelling in _spellings(word, languages))
    if len(word) <= 3:
        return False
    return any(fuzz.ratio(word, other) >= ECHO_SIMILARITY for other in spoken if len(other) > 2)


def loudness(samples: np.ndarray, rate: int) -> np.ndarray:
    """The loudness contour of ``samples`` (any scale): log10 mean power per 10 ms."""
    hop = rate // LOUDNESS_HZ
    frames = samples.size // hop
    power = np.mean(np.square(samples[:frames * hop].reshape(frames, hop), dtype=np.float64),
                    axis=1)
    scale = float(np.iinfo(np.int16).max) ** 2 if samples.dtype == np.int16 else 1.0
    return np.asarray(np.log10(power / scale + 10.0 ** SILENT))


def follows(heard: np.ndarray, reply: np.ndarray, at: int) -> float:
    """How closely the contour ``heard`` follows ``reply``'s from frame ``at`` on, a little
    later or earlier (:data:`ECHO_LAGS_MS`): the best correlation, 0 when there is nothing to
    compare (too short, or flat: a steady tone or hum). Before and after the reply its
    contour is silence."""
    if heard.size < LOUDNESS_HZ // 4 or np.ptp(heard) < FLAT:
        return 0.0
    lags = range(ECHO_LAGS_MS[0] * LOUDNESS_HZ // 1000, ECHO_LAGS_MS[1] * LOUDNESS_HZ // 1000)
    silence = float(reply.min()) if reply.size else 0.0
    before = max(0, lags.stop - at)
    after = max(0, at - lags.start + heard.size - reply.size)
    padded = np.concatenate([np.full(before, silence), reply, np.full(after, silence)])
    best = 0.0
    for lag in lags:
        part = padded[before + at - lag:before + at - lag + heard.size]
        if part.size == heard.size and np.ptp(part) >= FLAT:
            best = max(best, float(np.corrcoef(heard, part)[0, 1]))
    return best


def follows_recent(audio: np.ndarray, end: int, reply: np.ndarray, audible_at: int, rate: int,
                   windows_s: Iterable[float]) -> float:
    """How closely the latest stretches of ``audio`` (ending at media time ``end``) follow the
    ``reply``'s contour, whose first frame was audible at media time ``audible_at``: each
    stretch of ``windows_s`` seconds, from the reply's first audio on at the earliest (a
    sound that began before the reply cannot be its echo, and its onset lined up with the
    reply's would look like one), and at least the shortest of them long. The weakest
    stretch counts: an echo follows the reply over a short stretch and a long one alike,
    while a voice over the reply often follows it by chance over one of them (the best of
    ~70 lags of a 0.6 s contour is >= 0.6 in about a third of the looks at real speech with
    no echo at all: docs/benchmarks.md, "The audio pump, real turns and the guard on an H200";
    benchmarks/echo_follows.py). 0 when no stretch fits."""
    windows = sorted(windows_s)
    scores, starts = [], set()
    for window_s in windows:
        first = max(end - min(audio.size, int(window_s * rate)), audible_at)
        if end - first >= windows[0] * rate and first not in starts:  # (short audio: once)
            starts.add(first)
            recent = audio[audio.size - (end - first):]
            scores.append(follows(loudness(recent, rate), reply,
                                  (first - audible_at) * LOUDNESS_HZ // rate))
    return min(scores, default=0.0)


def _asks_to_stop(words: list[str], reply_words: set[str], stop_words: frozenset[str]) -> bool:
    """Whether ``words`` hold one of ``stop_words`` or a stop phrase that is not the reply's
    own."""
    if any(word in stop_words and word not in reply_words for word in words):
        return True
    return any(pair in STOP_PHRASES and not set(pair) <= reply_words
               for pair in itertools.pairwise(words))


def judge(text: str, spoken: str, languages: Iterable[str], *,
          follows_reply: float = 0.0) -> Judgement:
    """What ``text`` (a transcript of speech heard over the reply) is, given ``spoken`` (the
    reply's words playing around that moment), the ``languages`` in play (the transcript's
    and the reply's) and how closely its sound follows the reply's (:func:`follows`: from
    :data:`ECHO_FOLLOWS` on it is echo whatever the words, unless it holds a stop word of a
    language in play; from :data:`ECHO_FOLLOWS_WEAK` on, if it has only a word or two of its
    own)."""
    words = fold(text)
    if not words:
        return Judgement(Verdict.NOTHING)
    languages = tuple(languages)
    reply_words = _echo_words(spoken, languages)
    stop_words = (frozenset().union(*(STOP_WORDS.get(language, ()) for language in
                                      {*languages, "en"}))
                  if follows_reply >= ECHO_FOLLOWS else ALL_STOP_WORDS)
    if _asks_to_stop(words, reply_words, stop_words):
        return Judgement(Verdict.USER, stop=True)  # (a "wait" the reply says is its echo)
    if follows_reply >= ECHO_FOLLOWS:
        return Judgement(Verdict.ECHO)
    if is_backchannel(words, languages):
        return Judgement(Verdict.BACKCHANNEL)
    own = [word for word in words if not _is_echo_word(word, reply_words, languages)]
    if not own:
        return Judgement(Verdict.ECHO)
    if is_backchannel(own, languages):
        return Judgement(Verdict.BACKCHANNEL)  # an acknowledgement heard with some echo
    if (len(own) < ECHO_PHRASE_USER_SHARE * len(words) and len(words) >= ECHO_PHRASE_MIN_WORDS
            and fuzz.partial_ratio(" ".join(words), " ".join(fold(spoken)))
            >= ECHO_PHRASE_SIMILARITY):
        return Judgement(Verdict.ECHO)  # the reply's words, misheard in places
    if len(own) < USER_SHARE * len(words):
        return Judgement(Verdict.ECHO)
    # What whisper makes of noise and faint echo: lone letters, one word over and over ("R,
    # R, R, R"), a count ("1, 2, 3, 4", "So, three, four, five, six, seven"). Only distinct
    # words of two letters or more count, and numbers not at all; mostly numbers is a count.
    numbers = _number_words(languages)
    counted = [word for word in own if not word.isdigit() and word not in numbers]
    if len(own) - len(counted) > len(counted):
        return Judgement(Verdict.NOTHING)
    distinct = list(dict.fromkeys(word for word in counted if len(word) > 1 or word in ("i", "a")))
    if not distinct:
        return Judgement(Verdict.NOTHING)
    sure = len(distinct) >= SURE_WORDS
    if not sure and follows_reply >= ECHO_FOLLOWS_WEAK:
        return Judgement(Verdict.ECHO)
    return Judgement(Verdict.USER, sure=sure)
