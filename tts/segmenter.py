"""Turn a stream of text deltas into speakable pieces, as early as it is safe to.

The first piece of a reply is allowed to be short: it ends at a clause boundary (comma,
semicolon, colon, dash) once it has ``first_piece_min_words`` words, or at the space after
``first_piece_max_words`` words when no boundary came, so speech starts a few words into the
reply instead of at the end of its first sentence. Such a cut never leaves an article, a
preposition or a conjunction at the end of the piece, where the synthesizer would give it a
phrase's final fall ("The capital of | France" is said as "The capital | of France"): it moves
back before them, or, when that would leave too few words, a word or two on past them. The
second piece is held to the same rules with twice the words (a clause boundary once it has as
many words as the first may have, or the space after twice that), so that it is written and
synthesized while the short first piece plays, not only at the end of a long sentence. Later
pieces end at sentence boundaries.
A boundary is only taken once the character after it has arrived, so "3." followed by "5"
stays "3.5", and abbreviations ("z. B.", "Dr.", "etc.", ...) of the European languages we
serve, initials and ordinal numbers do not end a sentence.

Pure and synchronous: :class:`Segmenter` keeps only the text not yet returned.
"""

from __future__ import annotations

import dataclasses
import re

# Abbreviations that end with a period and rarely end a sentence, lower-cased, without their
# final period. Multi-part ones ("z. B.") are matched by their last part and the text before.
_ABBREVIATIONS: dict[str, frozenset[str]] = {
    "en": frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "vs", "jr", "sr", "e.g",
                     "i.e", "approx", "dept", "fig", "inc", "ltd", "mt", "a.m", "p.m",
                     "u.s", "u.k", "co", "corp", "gen", "gov", "sgt", "capt", "lt", "col"}),
    "de": frozenset({"z", "b", "z.b", "u", "a", "u.a", "d", "h", "d.h", "usw", "bzw", "ca",
                     "nr", "dr", "hr", "fr", "evtl", "ggf", "inkl", "vgl", "bspw", "sog",
                     "str", "tel", "abs", "allg", "zb", "s", "o", "u.ä", "ä", "jh", "mio",
                     "mrd", "prof", "dipl", "ing", "geb", "gest", "bzgl", "zzgl", "max",
                     "min", "std", "uvm", "v", "chr", "n"}),
    "fr": frozenset({"m", "mm", "mme", "mlle", "dr", "pr", "st", "ste", "cf", "p", "ex",
                     "p.ex", "env", "av", "apr", "j.-c", "c.-à-d", "bd", "no", "vol", "éd"}),
    "es": frozenset({"sr", "sra", "srta", "dr", "dra", "ud", "uds", "p", "ej", "p.ej", "núm",
                     "pág", "av", "avda", "d", "dña", "lic", "ing", "aprox", "tel", "prof",
                     "sres", "vd", "vds", "a.c", "d.c", "ee.uu", "cía"}),
    "it": frozenset({"sig", "sigg", "sig.ra", "sig.na", "dott", "dott.ssa", "prof", "ing",
                     "avv", "es", "pag", "p", "ecc", "n", "tel", "geom", "rag", "arch",
                     "a.c", "d.c", "s.p.a", "c.so", "v.le", "p.za"}),
    "nl": frozenset({"bijv", "d.w.z", "enz", "o.a", "dhr", "mevr", "mr", "dr", "drs", "ir",
                     "ing", "prof", "nr", "blz", "ca", "evt", "m.b.t", "t.o.v", "z.g.a.n",
                     "jl", "mw", "vs", "a.s", "i.p.v", "n.a.v", "resp", "incl", "excl"}),
    "pt": frozenset({"sr", "sra", "srta", "dr", "dra", "prof", "profa", "eng", "av", "p",
                     "ex", "p.ex", "pág", "n", "nº", "tel", "a.c", "d.c", "v.exa", "exmo",
                     "exma", "lda", "cia", "aprox", "obs", "etc"}),
    "pl": frozenset({"np", "itd", "itp", "tzn", "tj", "dr", "prof", "ul", "al", "m.in",
                     "mgr", "inż", "hab", "nr", "tel", "ok", "godz", "wg", "ww", "zob",
                     "jw", "r", "w", "p", "pl", "św", "gen", "płk", "ks", "tys",
                     "mln", "mld", "ds", "min"}),
}
# "etc." and its kin end sentences often enough only when a capital letter follows.
_OFTEN_FINAL = frozenset({"etc", "usw", "ecc", "enz", "itd", "itp", "uvm"})
# Languages that write ordinal numbers as "3." ("am 3. Oktober", "3. maja").
_ORDINAL_PERIOD_LANGUAGES = frozenset({"de", "pl", "da", "no", "nb", "fi", "cs", "sk", "sl",
                                       "hr", "sr", "hu", "et", "lv", "is", "tr"})

# Words that lead into the next one (articles, prepositions, conjunctions, possessives, the
# verbs "be", "have" and a few auxiliaries): a first piece cut after a few words does not end
# on one ("The kitchen light | is on.", not "The kitchen light is | on.").
_LEADS_IN: dict[str, frozenset[str]] = {
    "en": frozenset({"a", "an", "the", "of", "to", "in", "on", "at", "for", "with", "from",
                     "by", "about", "into", "and", "or", "but", "as", "than", "that", "my",
                     "your", "his", "her", "its", "our", "their", "this", "these", "those",
                     "some", "very", "is", "are", "was", "were", "will",
                     "would", "can", "could", "has", "have", "had", "be", "been"}),
    "de": frozenset({"der", "die", "das", "den", "dem", "des", "ein", "eine", "einen",
                     "einem", "einer", "eines", "kein", "keine", "und", "oder", "aber", "von",
                     "vom", "zu", "zum", "zur", "mit", "in", "im", "ins", "auf", "für", "an",
                     "am", "bei", "beim", "aus", "nach", "über", "unter", "vor", "durch",
                     "um", "als", "wie", "dass", "mein", "meine", "dein", "deine", "ihr",
                     "ihre", "sein", "seine", "sehr", "ist", "sind", "war", "waren",
                     "wird", "werden", "hat", "haben", "kann"}),
    "fr": frozenset({"le", "la", "les", "l", "un", "une", "des", "de", "du", "d", "à", "au",
                     "aux", "et", "ou", "mais", "en", "pour", "par", "sur", "dans", "avec",
                     "sans", "sous", "que", "qu", "qui", "ce", "cet", "cette", "ces", "mon",
                     "ma", "mes", "ton", "ta", "tes", "son", "sa", "ses", "notre", "votre",
                     "leur", "leurs", "très", "plus", "est", "sont", "était", "sera",
                     "a", "ont", "va", "peut"}),
    "es": frozenset({"el", "la", "los", "las", "un", "una", "unos", "unas", "de", "del", "a",
                     "al", "y", "e", "o", "u", "pero", "en", "con", "por", "para", "sin",
                     "sobre", "entre", "que", "como", "mi", "mis", "tu", "tus", "su", "sus",
                     "muy", "más", "es", "son", "está", "están", "era", "fue", "ha",
                     "han", "va", "puede"}),
    "it": frozenset({"il", "lo", "la", "i", "gli", "le", "l", "un", "uno", "una", "di",
                     "del", "dello", "della", "dei", "degli", "delle", "a", "al", "allo",
                     "alla", "ai", "agli", "alle", "da", "dal", "dalla", "in", "nel", "nella",
                     "nei", "con", "per", "su", "sul", "sulla", "tra", "fra", "e", "ed", "o",
                     "ma", "che", "come", "mio", "mia", "tuo", "tua", "suo", "sua", "molto",
                     "più", "è", "sono", "era", "ha", "hanno", "può", "sta"}),
    "nl": frozenset({"de", "het", "een", "van", "en", "of", "maar", "in", "op", "met",
                     "voor", "naar", "aan", "te", "bij", "uit", "over", "door", "om", "als",
                     "dat", "mijn", "jouw", "je", "zijn", "haar", "ons", "onze", "hun",
                     "heel", "zeer", "is", "was", "wordt", "heeft", "hebben", "kan",
                     "zal"}),
    "pt": frozenset({"o", "a", "os", "as", "um", "uma", "uns", "umas", "de", "do", "da",
                     "dos", "das", "em", "no", "na", "nos", "nas", "ao", "aos", "à", "às",
                     "e", "ou", "mas", "com", "por", "pelo", "pela", "para", "sem", "sobre",
                     "entre", "que", "como", "meu", "minha", "seu", "sua", "muito", "mais",
                     "é", "são", "está", "estão", "era", "foi", "tem", "vai", "pode"}),
    "pl": frozenset({"i", "a", "oraz", "lub", "albo", "ale", "w", "we", "z", "ze", "na",
                     "do", "o", "od", "po", "za", "przez", "dla", "bez", "pod", "nad", "przy",
                     "u", "że", "aby", "jak", "mój", "moja", "twój", "twoja", "bardzo",
                     "jest", "są", "był", "była", "było", "ma", "może"}),
}

_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:"
_CLOSERS = "\"'”’»)]}"
_WORD_BEFORE_PERIOD = re.compile(r"([\w.\-]+)\.$", re.UNICODE)
_WORDS = re.compile(r"\w+", re.UNICODE)


# A reply's first piece ends after at most this many words when no boundary came first (the
# service's [tts] first_piece_words). Four make the first audio ~0.15-0.2 s sooner on two
# cores than six; with the second piece held to twice as many words, the rest is ready as
# often as after six (docs/benchmarks.md, "Four words first, eight next").
FIRST_PIECE_MAX_WORDS = 4


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    language: str = "en"
    first_piece_min_words: int = 2
    # 0: the first piece waits for a boundary like the others
    first_piece_max_words: int = FIRST_PIECE_MAX_WORDS
    # The second piece: a clause boundary after first_piece_max_words words, at most this many
    # (None: twice first_piece_max_words; 0: a sentence boundary like the later pieces).
    second_piece_max_words: int | None = None
    # Without any boundary, a piece is cut at a space once it is this long.
    max_piece_chars: int = 250


class Segmenter:
    """Feed text deltas with :meth:`feed`; call :meth:`flush` at the end of the reply."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        language = self.config.language.split("-")[0].split("_")[0].lower()
        self._language = language
        self._abbreviations = _ABBREVIATIONS.get(language, frozenset()) | _ABBREVIATIONS["en"]
        self._leads_in = _LEADS_IN.get(language, frozenset())
        self._buffer = ""
        self._pieces_out = 0

    def feed(self, delta: str) -> list[str]:
        """Add text; return the pieces that became complete (possibly none)."""
        self._buffer += delta
        pieces: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if _WORDS.search(piece):
                pieces.append(piece)
                self._pieces_out += 1
            elif piece and pieces:
                pieces[-1] += piece  # stray punctuation belongs to the piece before
        return pieces

    def flush(self) -> list[str]:
        """Return whatever is left as a last piece (if it has any word in it)."""
        piece, self._buffer = self._buffer.strip(), ""
        if _WORDS.search(piece):
            self._pieces_out += 1
            return [piece]
        return []

    def cut_early(self, min_words: int) -> list[str]:
        """The text so far as a piece before its boundary, when the listener is about to run
        out of audio and the sentence is still being written: up to the last clause boundary,
        else the last complete word, if that holds at least ``min_words`` words; else none.
        (A sentence cut mid-way sounds worse than a whole one, and better than silence.)"""
        text = self._buffer
        space = text.rfind(" ")
        if space <= 0:
            return []
        cut = space + 1  # the word before the last space is complete
        clause = max(text.rfind(mark + " ", 0, space + 1) for mark in _CLAUSE_END)
        if clause > 0 and len(_WORDS.findall(text[:clause])) >= min_words:
            cut = clause + 1
        piece = text[:cut].strip()
        if len(_WORDS.findall(piece)) < min_words:
            return []
        self._buffer = text[cut:].lstrip()
        self._pieces_out += 1
        return [piece]

    def _find_cut(self) -> int | None:
        text = self._buffer
        short = self._short_piece()
        cap = self._after_words(text, short[1]) if short and short[1] else None
        for index, char in enumerate(text):
            if cap is not None and index >= cap:
                return cap  # no boundary within the first words: cut after them
            if char == "\n" and _WORDS.search(text[:index]):
                return index + 1
            if index + 1 >= len(text):
                break  # we need to see the next character to decide
            nxt = text[index + 1]
            if char in _SENTENCE_END:
                end = self._extend_over_closers(text, index + 1)
                if end >= len(text):
                    return None  # closers may continue: wait
                if text[end].isspace() and self._is_sentence_end(text, index, end):
                    return end
            elif (short and char in _CLAUSE_END and nxt.isspace()
                  and len(_WORDS.findall(text[:index])) >= short[0]):
                return index + 1
            elif (short and char in "–—" and text[index - 1:index].isspace()
                  and len(_WORDS.findall(text[:index])) >= short[0]):
                return index
        if cap is not None:
            return cap
        if len(text) > self.config.max_piece_chars:
            space = text.rfind(" ", 0, self.config.max_piece_chars)
            return space + 1 if space > 0 else self.config.max_piece_chars
        return None

    def _short_piece(self) -> tuple[int, int] | None:
        """For the piece being cut, when it may end before a sentence boundary: the fewest
        words before a clause boundary ends it, and the most it may have (0: no limit)."""
        first_most = self.config.first_piece_max_words
        if self._pieces_out == 0:
            return self.config.first_piece_min_words, max(first_most, 0)
        second_most = self.config.second_piece_max_words
        if second_most is None:
            second_most = 2 * first_most
        if self._pieces_out > 1 or first_most <= 0 or second_most <= 0:
            return None
        return first_most, second_most

    def _after_words(self, text: str, count: int) -> int | None:
        """Where a short (first or second) piece of about ``count`` words ends: after the first
        word from the ``count``-th on that a space follows, once more text follows the space
        (so the word is known to be complete); else None. A piece that would end on words
        leading into the next (``_LEADS_IN``) ends before them if at least
        ``first_piece_min_words`` words stay, else on the word after them (at most two words
        later)."""
        words = list(_WORDS.finditer(text))
        for index in range(count - 1, len(words)):
            end = words[index].end()
            if end >= len(text) or text[end] != " ":
                continue  # "3,5": the word goes on
            if end + 1 >= len(text):
                return None
            back = index
            while back >= 0 and words[back].group().lower() in self._leads_in:
                back -= 1
            if back == index:
                return end + 1
            before = words[back].end() if back >= 0 else 0
            while text[before] in _SENTENCE_END + _CLAUSE_END + _CLOSERS:
                before += 1  # "z. B. | ein": the word's punctuation stays with it
            if back + 1 >= self.config.first_piece_min_words and text[before] == " ":
                return before + 1
            if index >= count + 1:
                return end + 1  # no better place within two more words
        return None

    @staticmethod
    def _extend_over_closers(text: str, index: int) -> int:
        while index < len(text) and (text[index] in _CLOSERS or text[index] in _SENTENCE_END):
            index += 1
        return index

    def _is_sentence_end(self, text: str, index: int, end: int) -> bool:
        if text[index] != ".":
            return True  # "!", "?" and "…" always end a sentence
        match = _WORD_BEFORE_PERIOD.search(text[: index + 1])
        if match is None:
            return True
        word = match.group(1).lower().lstrip("-")
        following = text[end:].lstrip()
        if not following:
            return False  # cannot tell yet
        next_is_capital = following[0].isupper()
        last_part = word.rsplit(".", 1)[-1]
        if word.isdigit() or last_part.isdigit():
            # "am 3. Oktober": in languages with ordinal periods, a number never ends here
            # unless nothing but a capitalised sentence start can follow; we stay safe.
            return self._language not in _ORDINAL_PERIOD_LANGUAGES
        if len(last_part) == 1 and last_part.isalpha():
            return False  # an initial ("J. R. R. Tolkien") or a part of "z. B."
        if word in _OFTEN_FINAL or last_part in _OFTEN_FINAL:
            return next_is_capital
        return not (word in self._abbreviations or last_part in self._abbreviations)


_MARKUP = re.compile(r"(```[\w+-]*|\*\*|__|\*|`+|^#{1,6}\s*|^>\s*|^[-•]\s+)", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def speakable(piece: str) -> str:
    """``piece`` without the markdown a model sometimes writes despite being told not to
    (emphasis, headings, bullets, code ticks and a fence's language, links), which a
    synthesizer would read out."""
    text = _LINK.sub(r"\1", piece)
    text = _MARKUP.sub("", text)
    return " ".join(text.split())
