"""The synthetic world: named entities with a visual look, and tweet-like posts that mention them.

A `World` holds entities of the four Twitter-GMNER types. Each entity has invented, word-like words
("Dara Kellan", "Port Veyra", "Norland FC") and an `Appearance`: a shape kind fixed by its type
(PER: figures, LOC: mountain/building/tower, ORG: badge/shield/disc, OTHER: shoe/bottle/gem), a pair
of distinct palette colours (fill and mark, unique per type) and a mark pattern. Some single-word
strings are *ambiguous*: the same words name entities of two or three types (like "Jordan" the player,
the country and the sneakers), each sense with its own look; only the post's context tells them apart.

Posts come from typed templates (`TEMPLATES`): every entity slot sits in a context that implies its
type ("{PER} scored {num} points", "new off-White x {OTHER} sneakers"), wrapped in tweet furniture
(RT, @user, #hashtags, `http://t.` tokens). A post mentions 1-4 entities with distinct surface
strings, so xml objects (named by string) link to exactly one mention.
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

TYPES = ("PER", "LOC", "ORG", "OTHER")

#: Clearly distinct colours (RGB) for entity looks; backgrounds use muted tones instead.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (240, 215, 30),
    "green": (35, 160, 55),
    "teal": (20, 165, 170),
    "blue": (35, 70, 215),
    "purple": (135, 55, 195),
    "pink": (240, 105, 180),
    "brown": (120, 70, 30),
    "black": (25, 25, 25),
    "white": (248, 248, 248),
    "grey": (125, 125, 125),
}

#: Shape kinds an entity of each type may take (see `render.draw_thing`).
KINDS: dict[str, tuple[str, ...]] = {
    "PER": ("figure", "figure_hat"),
    "LOC": ("mountain", "building", "tower"),
    "ORG": ("badge", "shield", "disc"),
    "OTHER": ("shoe", "bottle", "gem"),
}
PATTERNS = ("hstripe", "vstripe", "dot")
SKIN = ((241, 194, 160), (198, 134, 90), (141, 85, 50), (255, 220, 190))

# Word parts for invented names; onsets and codas chosen so that names read like words.
_ONSETS = ("b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "gr", "f", "h", "j")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "ou", "y", "ae")
_CODAS = ("", "", "", "", "n", "r", "l", "s", "k", "m", "x", "nd")

# Name shapes per type: "{}" is an invented word. Suffix words make names realistic, not giveaways:
# the bare single-word form exists for every type.
_NAME_FORMS: dict[str, tuple[tuple[str, float], ...]] = {
    "PER": (("{} {}", 0.7), ("{}", 0.3)),
    "LOC": (
        ("{}", 0.4), ("Port {}", 0.12), ("Lake {}", 0.1), ("{} City", 0.12), ("North {}", 0.08), ("San {}", 0.08),
        ("{} Bay", 0.1),
    ),
    "ORG": (
        ("{}", 0.3), ("{} FC", 0.15), ("{} United", 0.1), ("{} Labs", 0.1), ("{} Records", 0.1), ("{} News", 0.1),
        ("{} Airlines", 0.05), ("{} University", 0.1),
    ),
    "OTHER": (
        ("{}", 0.35), ("{} Pro", 0.15), ("Air {}", 0.12), ("{} Festival", 0.13), ("{} Cup", 0.1), ("{} {}", 0.15),
    ),
}

#: Type sets of the ambiguous strings (cycled): each string gets one entity per type in its set.
_AMBIGUOUS_SENSES = (
    ("PER", "OTHER"),
    ("PER", "LOC"),
    ("LOC", "ORG"),
    ("ORG", "OTHER"),
    ("PER", "ORG"),
    ("PER", "LOC", "OTHER"),
    ("LOC", "OTHER"),
)

#: Post bodies. `{PER}`..`{OTHER}` are entity slots; `{num} {user} {tag} {url} {day} {emo}` are fillers.
TEMPLATES: tuple[str, ...] = (
    # PER
    "{PER} scored {num} points last night",
    "Happy birthday to the legend {PER} !",
    "{PER} says the new album is almost done",
    "Interview with {PER} about the road ahead",
    "{PER} and {PER} spotted together at the premiere",
    "So proud of {PER} for winning MVP {emo}",
    "Can ' t believe {PER} replied to me {emo}",
    # PER + LOC
    "{PER} performing live in {LOC} tonight",
    "{PER} arrives in {LOC} ahead of the summit",
    "Fans welcome {PER} at the airport in {LOC}",
    # PER + ORG
    "{PER} signs a two-year deal with {ORG}",
    "{ORG} confirm {PER} will miss the next game",
    "{PER} named new CEO of {ORG}",
    "{PER} leaves {ORG} after {num} years",
    # PER + OTHER
    "{PER} wearing the new {OTHER} sneakers",
    "{PER} unveils the {OTHER} at the launch event",
    "{PER} to headline {OTHER} this summer",
    # LOC
    "Storm warning for {LOC} and {LOC} this {day}",
    "Beautiful sunset over {LOC} {emo}",
    "Live from the streets of {LOC}",
    "Cheap flights to {LOC} this {day}",
    # ORG
    "{ORG} announced record profits today",
    "Statement from {ORG} on the outage",
    "{ORG} beat {ORG} {num} - {num}",
    "Shares of {ORG} jump after earnings",
    "{ORG} opens a new office in {LOC}",
    "{ORG} fans gather in {LOC} for the parade",
    # OTHER
    "Just got my new {OTHER} sneakers {emo}",
    "Limited edition off-White x {OTHER} drop this {day}",
    "Unboxing the {OTHER} , first impressions",
    "Tickets for {OTHER} sold out in minutes",
    "The {OTHER} trailer just dropped",
    "Who else is watching {OTHER} tonight ?",
    "{OTHER} pre-orders open now {url}",
    # three or four entities
    "{PER} and {PER} take the stage at {OTHER} in {LOC}",
    "{ORG} star {PER} shows off {OTHER} in {LOC}",
    "{PER} joins {ORG} in {LOC} for talks",
    "{ORG} to sponsor {OTHER} in {LOC}",
    "{PER} , {PER} and {PER} nominated for best video",
    "{LOC} police say {PER} was not involved",
    "From {LOC} to {LOC} : {PER} world tour dates announced",
    "{ORG} CEO {PER} unveils the {OTHER}",
    "{PER} and {PER} visit {LOC} with {ORG} staff",
    "{ORG} vs {ORG} live from {LOC} , {PER} starts",
)
_PREFIXES = (("", 0.5), ("RT @ {user} :", 0.3), ("@ {user}", 0.12), ("BREAKING :", 0.08))
_SUFFIXES = (
    ("", 0.35), ("# {tag}", 0.2), ("{url}", 0.15), ("# {tag} # {tag}", 0.1), ("via @ {user}", 0.1),
    ("{emo} {url}", 0.1),
)
_FILLERS: dict[str, tuple[str, ...]] = {
    "tag": (
        "tbt", "NBA", "love", "news", "travel", "fashion", "music", "sneakers", "gameday", "photo", "breaking",
        "TeamUSA",
    ),
    "url": ("http://t.", "https"),
    "day": ("weekend", "Monday", "Friday", "Sunday", "week", "morning"),
    "emo": (":)", "!!", "<3", ":D", "..."),
}
_SLOT_TYPES = {"{" + t + "}": t for t in TYPES}


@dataclass(frozen=True)
class Appearance:
    """How an entity looks: shape `kind`, `fill` and `mark` colours (palette names) and mark `pattern`.

    `skin` is the head colour of person figures (an index into `SKIN`), unused by other kinds.
    """

    kind: str
    fill: str
    mark: str
    pattern: str
    skin: int = 0


@dataclass(frozen=True)
class WorldEntity:
    """A named entity of the world: its words, type, look and how often posts mention it (`weight`)."""

    words: tuple[str, ...]
    type: str
    look: Appearance
    weight: float

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Mention:
    """An entity mentioned at words `start..end` (inclusive) of a post."""

    start: int
    end: int
    entity: WorldEntity


@dataclass
class World:
    """All entities, with lookup by type. `ambiguous` lists the strings shared by several types."""

    entities: list[WorldEntity]
    ambiguous: list[str]

    def of_type(self, type_: str) -> list[WorldEntity]:
        return [e for e in self.entities if e.type == type_]


#: Unambiguous entities per type, roughly in proportion to how often templates mention each type.
ENTITIES_PER_TYPE = {"PER": 16, "LOC": 12, "ORG": 12, "OTHER": 10}


def build_world(rng: np.random.Generator, per_type: dict[str, int] = ENTITIES_PER_TYPE, ambiguous: int = 6) -> World:
    """A world with `per_type[t]` unambiguous entities of each type t plus `ambiguous` shared strings.

    Every entity of a type gets its own (fill, mark) colour pair, so same-type entities always differ
    in colour. Popularity weights fall off gently (Zipf-like) so that most entities recur in training.
    """
    pairs_needed = max(per_type.values()) + ambiguous
    palette = list(PALETTE)
    if pairs_needed > len(palette) * (len(palette) - 1):
        raise ValueError(
            f"build_world: {pairs_needed} entities of one type exceed the {len(palette)}-colour palette's colour pairs"
        )
    used_words: set[str] = set(_template_words())
    names: dict[str, list[tuple[str, ...]]] = {t: [] for t in TYPES}
    shared = [(_invent_word(rng, used_words),) for _ in range(ambiguous)]
    senses = [_AMBIGUOUS_SENSES[i % len(_AMBIGUOUS_SENSES)] for i in range(ambiguous)]
    for words, types in zip(shared, senses):
        for t in types:
            names[t].append(words)
    for t in TYPES:
        forms, probs = zip(*_NAME_FORMS[t])
        while len(names[t]) < per_type[t] + sum(t in s for s in senses):
            form = forms[rng.choice(len(forms), p=np.array(probs) / sum(probs))]
            parts = [_invent_word(rng, used_words) for _ in range(form.count("{}"))]
            names[t].append(tuple(form.format(*parts).split()))
    entities: list[WorldEntity] = []
    for t in TYPES:
        pair_ids = rng.permutation(len(palette) * (len(palette) - 1))[: len(names[t])]
        weights = 1.0 / (rng.permutation(len(names[t])) + 8.0) ** 0.5
        for words, pair_id, weight in zip(names[t], pair_ids, weights):
            fill, offset = divmod(int(pair_id), len(palette) - 1)
            mark = (fill + 1 + offset) % len(palette)
            look = Appearance(
                kind=str(rng.choice(KINDS[t])),
                fill=palette[fill],
                mark=palette[mark],
                pattern=str(rng.choice(PATTERNS)),
                skin=int(rng.integers(len(SKIN))),
            )
            # Ambiguous senses are boosted so that each sense recurs across the corpus.
            entities.append(WorldEntity(words, t, look, float(weight) * (2.0 if words in shared else 1.0)))
    return World(entities, [w[0] for w in shared])


def compose_post(world: World, rng: np.random.Generator) -> tuple[list[str], list[str], list[Mention]]:
    """Sample one post: `(words, BIO tags, mentions)`, mentions in word order with distinct strings."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    parts = [_pick(rng, _PREFIXES), template, _pick(rng, _SUFFIXES)]
    words: list[str] = []
    tags: list[str] = []
    mentions: list[Mention] = []
    used: set[str] = set()
    for token in " ".join(p for p in parts if p).split():
        if token in _SLOT_TYPES:
            entity = _pick_entity(world, _SLOT_TYPES[token], used, rng)
            used.add(entity.text)
            mentions.append(Mention(len(words), len(words) + len(entity.words) - 1, entity))
            words.extend(entity.words)
            tags.extend([f"B-{entity.type}"] + [f"I-{entity.type}"] * (len(entity.words) - 1))
        else:
            words.append(_fill(token, rng))
            tags.append("O")
    return words, tags, mentions


def _pick_entity(world: World, type_: str, used: set[str], rng: np.random.Generator) -> WorldEntity:
    pool = [e for e in world.of_type(type_) if e.text not in used]
    weights = np.array([e.weight for e in pool])
    return pool[rng.choice(len(pool), p=weights / weights.sum())]


def _fill(token: str, rng: np.random.Generator) -> str:
    if token == "{num}":
        return str(int(rng.integers(1, 60)))
    if token == "{user}":
        return _username(rng)
    if token.startswith("{") and token.endswith("}"):
        options = _FILLERS[token[1:-1]]
        return options[rng.integers(len(options))]
    return token


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    texts, probs = zip(*options)
    return texts[rng.choice(len(texts), p=np.array(probs) / sum(probs))]


def _syllables(rng: np.random.Generator, count: int) -> str:
    return "".join(
        _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] + _CODAS[rng.integers(len(_CODAS))]
        for _ in range(count)
    )


def _invent_word(rng: np.random.Generator, used: set[str]) -> str:
    """A new capitalised word of two or three syllables and 4-8 letters, not in `used` (which it joins)."""
    while True:
        word = _syllables(rng, int(rng.choice((2, 2, 2, 3)))).capitalize()
        if 4 <= len(word) <= 8 and word not in used:
            used.add(word)
            return word


def _username(rng: np.random.Generator) -> str:
    """An @-handle such as `kelvo_22`, `drasmi481` or `thaen`: lower-case, so never an entity word."""
    base = _syllables(rng, 2)
    endings = ("", f"_{rng.integers(1, 99)}", str(rng.integers(1, 999)))
    return base + endings[rng.integers(len(endings))]


def _template_words() -> list[str]:
    texts = list(TEMPLATES) + [t for t, _ in _PREFIXES + _SUFFIXES] + [w for ws in _FILLERS.values() for w in ws]
    return [w for text in texts for w in text.split()]

