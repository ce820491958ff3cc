"""Scrubbing known secrets out of text, in every form they travel in.

Pattern-based redaction (runtime.logs) recognises credential *shapes*; it
cannot know that a provider echoed this request's key base64-encoded, or
masked as `sk-c...1234`. Given the actual secrets, a `SecretScrubber`
removes, in one linear pass per form:

- the secret and its encodings: URL-encoded (either case of hex digits,
  `+` or `%20` for spaces), JSON-escaped slashes, hex, and base64/base64url
  at each of the three byte alignments, so the base64 of any text holding
  the key (`Bearer <key>`, `user:<key>`) is found too, padded or not;
- every word holding the secret's first or last characters where a word
  starts or ends: masked forms that keep either end, such as `sk-c...1234`,
  `sk-canary****`, `****1234`, a cut-off key, or its last four characters
  standing alone ("a key ending in 1234").

Cost: building a scrubber is a few encodings per secret; scrubbing is one
set of 4-character windows over the text (to find which forms can be
present at all) plus a C-speed search per form that can, so a log line with
no secret in it costs one pass whatever the number of secrets.

`KNOWN_SECRETS` is the process's registry: the resolver registers every
credential it fetches, and the log processor scrubs every line against it,
including lines written by libraries (httpcore logs response headers at
DEBUG, echoed keys and all).
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections import OrderedDict
from typing import Final, Iterable
from urllib.parse import quote, quote_plus

MARK: Final = "[REDACTED]"
# A masked form keeping this many leading or trailing characters of a
# secret is treated as the secret; a word keeping SURE_KEEP of them is, mask
# or no mask (a key cut off, or a sentence quoting its end).
MASK_KEEP: Final = 4
SURE_KEEP: Final = 8
_KEPT: Final = range(MASK_KEEP, SURE_KEEP + 1)
# Shorter secrets are scrubbed only verbatim: their ends would match words
# that have nothing to do with them (and they are not real keys anyway).
MIN_FRAGMENT_SECRET: Final = 8
# Encodings are looked for only when long enough not to be common words.
MIN_ENCODED: Final = 8
_GRAM: Final = 4  # every form is indexed by its first 4 characters

# Words for the masked-form rule: runs of anything but whitespace, quotes
# and the punctuation that separates a value from its name or container.
_WORD_CHAR: Final = r"[^\s\"'`,;:=<>()\[\]{}|\\]"
_WORD: Final = re.compile(f"{_WORD_CHAR}+")
_TRAILING_PUNCTUATION: Final = ".!?"
_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")
_ENCODED_RUN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")


def _base64_cores(raw: bytes) -> set[str]:
    """For each alignment of `raw` inside a longer byte string, the base64
    characters that depend on `raw` alone (standard and URL-safe alphabets)."""
    cores: set[str] = set()
    n = len(raw)
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        start = -(-8 * offset // 6)  # ceil: the first character made only of raw's bits
        end = (8 * (offset + n)) // 6  # floor: one past the last such character
        core = encoded[start:end]
        cores.add(core)
        cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def encoded_forms(secret: str) -> dict[str, bool]:
    """The secret verbatim and in every encoding scrubbed for it; True for
    the forms found inside a longer encoded run (base64, hex), whose whole
    run is removed: its ends mix the secret's bits with its neighbours'."""
    forms = {secret: False}
    raw = secret.encode("utf-8")
    if len(secret) < MIN_FRAGMENT_SECRET:
        return forms
    for url in (quote(secret, safe=""), quote_plus(secret, safe="")):
        forms.setdefault(url, False)
        forms.setdefault(_PERCENT_HEX.sub(lambda m: m.group(0).lower(), url), False)
    forms.setdefault(secret.replace("/", "\\/"), False)
    for encoded in (raw.hex(), raw.hex().upper(), *_base64_cores(raw)):
        forms[encoded] = True
    return {f: run for f, run in forms.items() if len(f) >= MIN_ENCODED or f == secret}


def _remove_runs(text: str, form: str) -> str:
    """`text` with every encoded run containing `form` replaced by MARK."""
    out: list[str] = []
    done = 0
    at = text.find(form)
    while at >= 0:
        start, end = at, at + len(form)
        while start > done and text[start - 1] in _ENCODED_RUN:
            start -= 1
        while end < len(text) and text[end] in _ENCODED_RUN:
            end += 1
        out += (text[done:start], MARK)
        done = end
        at = text.find(form, done)
    out.append(text[done:])
    return "".join(out)


class SecretScrubber:
    """Removes the given secrets, in every form above, from text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # first 4 characters -> the forms starting with them (longest
        # first), each with whether its whole encoded run goes
        self._forms: dict[str, list[tuple[str, bool]]] = {}
        # The secrets' first and last k characters, for k in MASK_KEEP..SURE_KEEP.
        self._heads: dict[int, set[str]] = {k: set() for k in _KEPT}
        self._tails: dict[int, set[str]] = {k: set() for k in _KEPT}
        self._short: set[str] = set()  # secrets under 4 characters: verbatim only
        for secret in secrets:
            if secret:
                self._add(secret)

    def _add(self, secret: str) -> None:
        if len(secret) < _GRAM:
            self._short.add(secret)
            return
        for form, run in encoded_forms(secret).items():
            bucket = self._forms.get(form[:_GRAM], [])
            if (form, run) not in bucket:
                # A new list, swapped in whole: a log line being scrubbed on
                # another thread sees the old one or the new one.
                self._forms[form[:_GRAM]] = sorted([*bucket, (form, run)], key=lambda f: len(f[0]), reverse=True)
        if len(secret) >= MIN_FRAGMENT_SECRET:
            for k in _KEPT:
                head, tail = secret[:k], secret[-k:]
                if _WORD.fullmatch(head):
                    self._heads[k] = self._heads[k] | {head}
                if _WORD.fullmatch(tail):
                    self._tails[k] = self._tails[k] | {tail}

    def __bool__(self) -> bool:
        return bool(self._forms or self._short)

    def __repr__(self) -> str:  # never the secrets
        return f"SecretScrubber(forms={sum(len(v) for v in self._forms.values())})"

    def scrub(self, text: str) -> str:
        if not text or not self:
            return text
        for secret in self._short:
            text = text.replace(secret, MARK)
        if len(text) < _GRAM:
            return text
        grams = {text[i:i + _GRAM] for i in range(len(text) - _GRAM + 1)}
        # `&` with the keys view walks the smaller side; grams.intersection(
        # self._forms) walked every key, a few for each secret known (0.13 ms
        # a line with 2,000 secrets).
        for gram in self._forms.keys() & grams:
            for form, run in self._forms[gram]:
                if form in text:
                    text = _remove_runs(text, form) if run else text.replace(form, MARK)
        heads = grams.intersection(self._heads[MASK_KEEP])
        tails = grams.intersection(self._tails[MASK_KEEP])
        if not (heads or tails):
            return text
        return _words_holding(frozenset(heads | tails)).sub(lambda m: self._masked(m.group(0), heads, tails), text)

    def _masked(self, word: str, heads: set[str], tails: set[str]) -> str:
        """MARK for a word that holds a secret's first or last characters
        where a word could start or end: SURE_KEEP of them, or at least
        MASK_KEEP next to a mask (`sk-c...`, `****1234`) or alone. Trailing
        sentence punctuation stays. A word merely sharing four characters
        with a key (`local-llama` for a key ending in `lama`) is left alone."""
        bare = word.rstrip(_TRAILING_PUNCTUATION)
        for head in heads:
            at = bare.find(head)
            while at >= 0:
                if at == 0 or not bare[at - 1].isalnum():
                    kept = max(k for k in _KEPT if bare[at:at + k] in self._heads[k])
                    rest = bare[at + kept:]
                    if kept == SURE_KEEP or not rest or _is_mask(rest):
                        return MARK + word[len(bare):]
                at = bare.find(head, at + 1)
        for tail in tails:
            at = bare.find(tail)
            while at >= 0:
                end = at + MASK_KEEP
                if end == len(bare) or not bare[end].isalnum():
                    kept = max(k for k in _KEPT if end >= k and bare[end - k:end] in self._tails[k])
                    before = bare[:end - kept]
                    if kept == SURE_KEEP or not before or _is_mask(before[::-1]):
                        return MARK + word[len(bare):]
                at = bare.find(tail, at + 1)
        return word


@functools.lru_cache(maxsize=256)
def _words_holding(grams: frozenset[str]) -> re.Pattern[str]:
    """The words holding any of `grams`. Only they can be masked forms, and
    a line has few of them: calling back into Python for every word of it
    cost more than the rest of the scrub. Tried only where a word starts,
    so each word is scanned once (time linear in the text)."""
    any_gram = "|".join(re.escape(gram) for gram in sorted(grams))
    return re.compile(f"(?<!{_WORD_CHAR}){_WORD_CHAR}*?(?:{any_gram}){_WORD_CHAR}*")


def _is_mask(text: str) -> bool:
    """Whether `text` starts with what masks the rest of a key: *, ., …, •, #, or xx."""
    return text[:1] in ("*", ".", "\u2026", "\u2022", "#") or text[:2].lower() == "xx"


def scrub_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """`text` without any of `secrets` in any of the forms above.

    Secrets the process already knows (KNOWN_SECRETS: every key the
    resolver fetched) are scrubbed by its prebuilt scrubber; only others
    cost building their encoded forms (about 80 us a key), which every
    successful chat paid for its upstream request id."""
    wanted = [s for s in secrets if s]
    if not wanted:
        return text
    if KNOWN_SECRETS.knows_all(wanted):
        return KNOWN_SECRETS.scrub(text)
    return SecretScrubber(wanted).scrub(text)


class KnownSecrets:
    """The credentials this process has held lately (the resolver's
    credential cache holds 1,000 by default), scrubbed from every log line.

    Adding is incremental; past `capacity` the oldest quarter is dropped and
    the scrubber rebuilt once (about 20 us a secret), so the cost stays
    amortised over the fetches that filled it.
    """

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._scrubber = SecretScrubber()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        with self._lock:
            if secret in self._secrets:
                self._secrets.move_to_end(secret)
                return
            self._secrets[secret] = None
            if len(self._secrets) <= self._capacity:
                self._scrubber._add(secret)
                return
            for _ in range(max(1, self._capacity // 4)):
                self._secrets.popitem(last=False)
            self._scrubber = SecretScrubber(self._secrets)

    def discard(self, *secrets: str) -> None:
        """Forget these secrets (a process stopping the component that held them)."""
        with self._lock:
            gone = [s for s in secrets if self._secrets.pop(s, 0) is None]
            if gone:
                self._scrubber = SecretScrubber(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def knows_all(self, secrets: Iterable[str]) -> bool:
        """Whether scrub() removes each of `secrets` (it removes the others it knows too)."""
        held = self._secrets
        return all(s in held for s in secrets)

    @property
    def capacity(self) -> int:
        return self._capacity

    def __repr__(self) -> str:
        return f"KnownSecrets(entries={len(self._secrets)})"

    def scrub(self, text: str) -> str:
        return self._scrubber.scrub(text)


KNOWN_SECRETS: Final = KnownSecrets()
