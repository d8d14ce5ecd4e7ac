"""No pretrained embeddings: every action has three surface forms (synonyms) and no GloVe
file ships, so the word embeddings are learned from scratch and must learn that
"opens the door" and "pulls the door open" name one moment."""

from bench.learning import planted

_SYNONYMS = (
    ("opens the door", ("pulls the door open", "swings the door open")),
    ("closes the door", ("shuts the door", "slams the door")),
    ("drinks from a cup", ("sips from a cup", "takes a drink")),
    ("reads a book", ("looks through a book", "studies a book")),
    ("folds a towel", ("folds up a towel", "creases a towel")),
    ("plays on a phone", ("scrolls on a phone", "texts on a phone")),
    ("throws a pillow", ("tosses a pillow", "flings a pillow")),
    ("washes the dishes", ("cleans the dishes", "scrubs the dishes")),
)

SPECS = (planted.SetSpec(
    name="no_glove", slots=(tuple(a for a, _ in _SYNONYMS),), templates=planted.ACTION_TEMPLATES,
    synonyms=_SYNONYMS, steps=(32, 64), events=(2, 3), window=(0.15, 0.3), feature_dim=64,
    signal=0.5, glove_dim=0, note="3 surface forms per action, embeddings from scratch"),)
