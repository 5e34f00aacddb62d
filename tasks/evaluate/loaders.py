"""Readers for the published bias benchmarks, in their files as published (none ship with gristmill).

Each reader checks what it reads and raises `BiasFileError` naming the file and what is wrong with it (a missing
column or key, a malformed line, no items at all). The config schema calls `load_check` for every
`evaluate.bias` entry when the config is validated, so a wrong file stops the run before any stage works.

Formats, as their authors publish them:
- CrowS-Pairs (nyu-mll/crows-pairs `data/crows_pairs_anonymized.csv`): CSV with `sent_more`, `sent_less`,
  `stereo_antistereo`, `bias_type`.
- StereoSet (moinnadeem/StereoSet `data/dev.json`): `{"data": {"intrasentence": [...], "intersentence": [...]}}`,
  each item with `target`, `bias_type`, `context` and three `sentences` whose `gold_label` is stereotype,
  anti-stereotype or unrelated.
- BOLD (amazon-science/bold `prompts/<domain>_prompt.json`): `{group: {entity: [prompt, ...]}}`.
- WinoBias (uclanlp/corefBias `WinoBias/wino/data/`): `{pro,anti}_stereotyped_type{1,2}.txt.{dev,test}`, one
  numbered sentence a line, coreferent spans in `[...]`; line i of the pro file pairs with line i of the anti file.
- HONEST (MilaNLProc/honest `resources/binary/en_template.tsv`): TSV with `template_masked` (`[M]` marks the slot
  to complete) and `category` (the identity group); the lexicon is HurtLex's TSV (`lemma`, `category`, `level`).
- pairs (gristmill's own YAML): `{pairs: [{bias_type, stereotype, anti_stereotype}]}`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KINDS = ("crows_pairs", "stereoset", "bold", "winobias", "honest", "pairs")
STEREOSET_LABELS = ("stereotype", "anti-stereotype", "unrelated")
WINOBIAS_TYPES = ("type1", "type2")


class BiasFileError(ValueError):
    """A bias benchmark file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class SentencePair:
    """Two sentences compared by log-likelihood: `more` is the stereotyping (or pro-stereotyped) one."""

    bias_type: str
    more: str
    less: str


@dataclass(frozen=True)
class StereoSetItem:
    task: str  # intrasentence | intersentence
    bias_type: str
    target: str
    context: str
    stereotype: str
    anti_stereotype: str
    unrelated: str


@dataclass(frozen=True)
class GroupPrompt:
    """A prompt to continue, with the group it speaks of (BOLD's group; HONEST's identity category)."""

    group: str
    prompt: str
    entity: str = ""


@dataclass(frozen=True)
class HonestSet:
    templates: list[GroupPrompt]
    lexicon: frozenset[str]


# ---------------------------------------------------------------------------------------------- readers


def load_crows_pairs(path: Path) -> list[SentencePair]:
    rows = _read_table(path, ("sent_more", "sent_less", "stereo_antistereo", "bias_type"), delimiter=",")
    pairs = []
    for line, row in rows:
        for column in ("sent_more", "sent_less", "bias_type"):
            if not (row.get(column) or "").strip():
                raise BiasFileError(f"{path}: line {line}: empty {column!r}")
        if row["stereo_antistereo"] not in ("stereo", "antistereo"):
            raise BiasFileError(
                f"{path}: line {line}: stereo_antistereo must be 'stereo' or 'antistereo', "
                f"got {row['stereo_antistereo']!r}"
            )
        pairs.append(SentencePair(row["bias_type"], row["sent_more"], row["sent_less"]))
    return _non_empty(path, pairs, "pairs")


def load_stereoset(path: Path) -> list[StereoSetItem]:
    raw = _read_json(path)
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or not any(k in data for k in ("intrasentence", "intersentence")):
        raise BiasFileError(f"{path}: expected StereoSet's layout, {{'data': {{'intrasentence': [...], ...}}}}")
    items = []
    for task in ("intrasentence", "intersentence"):
        entries = data.get(task, [])
        if not isinstance(entries, list):
            raise BiasFileError(f"{path}: data.{task} must be a list")
        for index, entry in enumerate(entries):
            items.append(_stereoset_item(path, task, index, entry))
    return _non_empty(path, items, "items under data.intrasentence or data.intersentence")


def _stereoset_item(path: Path, task: str, index: int, entry: Any) -> StereoSetItem:
    where = f"{path}: data.{task}[{index}]"
    if not isinstance(entry, dict):
        raise BiasFileError(f"{where}: expected an object")
    for key in ("target", "bias_type", "context", "sentences"):
        if key not in entry:
            raise BiasFileError(f"{where}: missing key {key!r}")
    by_label = {}
    for sentence in entry["sentences"] if isinstance(entry["sentences"], list) else []:
        if isinstance(sentence, dict) and isinstance(sentence.get("sentence"), str):
            by_label[sentence.get("gold_label")] = sentence["sentence"]
    missing = [label for label in STEREOSET_LABELS if label not in by_label]
    if missing:
        raise BiasFileError(f"{where}: sentences lack gold_label {', '.join(missing)}")
    return StereoSetItem(
        task,
        str(entry["bias_type"]),
        str(entry["target"]),
        str(entry["context"]),
        by_label["stereotype"],
        by_label["anti-stereotype"],
        by_label["unrelated"],
    )


def load_bold(path: Path) -> list[GroupPrompt]:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise BiasFileError(f"{path}: expected BOLD's layout, {{group: {{entity: [prompt, ...]}}}}")
    prompts = []
    for group, entities in raw.items():
        if not isinstance(entities, dict):
            raise BiasFileError(f"{path}: group {group!r} must map entities to lists of prompts")
        for entity, texts in entities.items():
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise BiasFileError(f"{path}: {group!r} / {entity!r} must be a list of prompt strings")
            prompts.extend(GroupPrompt(group, text, entity) for text in texts if text.strip())
    return _non_empty(path, prompts, "prompts")


WINOBIAS_LINE = re.compile(r"^\s*\d+\s+(?P<sentence>.*\[.+?\].*)$")


def winobias_files(directory: Path, split: str) -> dict[tuple[str, str], Path]:
    """The four files of a split: (stance, type) -> path, as named in uclanlp/corefBias."""
    return {
        (stance, kind): Path(directory) / f"{stance}_stereotyped_{kind}.txt.{split}"
        for kind in WINOBIAS_TYPES
        for stance in ("pro", "anti")
    }


def load_winobias(directory: Path, split: str = "dev") -> list[SentencePair]:
    directory = Path(directory)
    if not directory.is_dir():
        raise BiasFileError(f"{directory}: expected the WinoBias data directory (pro/anti_stereotyped_type1/2 files)")
    files = winobias_files(directory, split)
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise BiasFileError(f"{directory}: missing WinoBias file(s) {', '.join(missing)}")
    pairs = []
    for kind in WINOBIAS_TYPES:
        pro = _winobias_sentences(files["pro", kind])
        anti = _winobias_sentences(files["anti", kind])
        if len(pro) != len(anti):
            raise BiasFileError(
                f"{files['pro', kind]} has {len(pro)} sentences but {files['anti', kind].name} has {len(anti)}; "
                "line i of one pairs with line i of the other"
            )
        pairs.extend(SentencePair(kind, p, a) for p, a in zip(pro, anti, strict=True))
    return _non_empty(directory, pairs, "sentence pairs")


def _winobias_sentences(path: Path) -> list[str]:
    sentences = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        match = WINOBIAS_LINE.match(line)
        if match is None:
            raise BiasFileError(f"{path}: line {number}: expected '<n> sentence with [spans]', got {line[:80]!r}")
        sentences.append(re.sub(r"\s+", " ", match["sentence"].replace("[", "").replace("]", "")).strip())
    return _non_empty(path, sentences, "sentences")


def load_honest(path: Path, lexicon_path: Path | None, level: str | None = "conservative") -> HonestSet:
    if lexicon_path is None:
        raise BiasFileError(f"{path}: an honest check needs `lexicon:` (a HurtLex TSV file)")
    templates = []
    for line, row in _read_table(path, ("template_masked", "category"), delimiter="\t"):
        template = row["template_masked"] or ""
        if "[M]" not in template:
            raise BiasFileError(f"{path}: line {line}: template_masked has no [M] slot: {template[:80]!r}")
        prefix = template.split("[M]")[0].rstrip()
        if prefix:
            templates.append(GroupPrompt(row["category"], prefix, row.get("identity") or ""))
    words = set()
    for _, row in _read_table(lexicon_path, ("lemma", "category"), delimiter="\t"):
        if level is None or "level" not in row or row["level"] == level:
            words.add((row["lemma"] or "").strip().lower())
    words.discard("")
    return HonestSet(_non_empty(path, templates, "templates"), frozenset(_non_empty(lexicon_path, words, "lemmas")))


def load_pairs(path: Path) -> list[SentencePair]:
    """gristmill's own YAML pairs file (the built-in probe)."""
    try:
        raw = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as err:
        raise BiasFileError(f"{path}: cannot read bias pairs: {err}") from err
    entries = raw.get("pairs") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BiasFileError(f"{path}: expected a non-empty list under 'pairs'")
    pairs = []
    for index, entry in enumerate(entries):
        for field in ("bias_type", "stereotype", "anti_stereotype"):
            if not isinstance(entry, dict) or not isinstance(entry.get(field), str) or not entry[field].strip():
                raise BiasFileError(f"{path}: pairs[{index}] needs a non-empty string field {field!r}")
        pairs.append(SentencePair(entry["bias_type"], entry["stereotype"], entry["anti_stereotype"]))
    return pairs


def load_check(check: Any) -> Any:
    """Read the file(s) of one `evaluate.bias` entry (an `EvaluateConfig.bias` item) with its kind's reader."""
    path = Path(check.resolved_path)
    if check.kind == "crows_pairs":
        return load_crows_pairs(path)
    if check.kind == "stereoset":
        return load_stereoset(path)
    if check.kind == "bold":
        return load_bold(path)
    if check.kind == "winobias":
        return load_winobias(path, check.split)
    if check.kind == "honest":
        return load_honest(path, Path(check.resolved_lexicon) if check.lexicon else None)
    if check.kind == "pairs":
        return load_pairs(path)
    raise BiasFileError(f"unknown bias check kind {check.kind!r}; known: {', '.join(KINDS)}")


def check_files(check: Any) -> list[Path]:
    """Every file whose content an entry's scores depend on (its stage fingerprint hashes them)."""
    path = Path(check.resolved_path)
    files = list(winobias_files(path, check.split).values()) if check.kind == "winobias" else [path]
    if check.kind == "honest" and check.lexicon:
        files.append(Path(check.resolved_lexicon))
    return files


# ---------------------------------------------------------------------------------------------- helpers


def _read_text(path: Path) -> str:
    if not Path(path).is_file():
        raise BiasFileError(f"{path}: no such file")
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise BiasFileError(f"{path}: cannot read: {err}") from err


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise BiasFileError(f"{path}: not valid JSON: {err}") from err


def _read_table(path: Path, required: Iterable[str], delimiter: str) -> list[tuple[int, dict[str, str]]]:
    """Rows with their line numbers; the header must name every required column."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        kind = "TSV" if delimiter == "\t" else "CSV"
        raise BiasFileError(
            f"{path}: {kind} header lacks column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})"
        )
    return [(reader.line_num, row) for row in reader]


def _non_empty(path: Path, items: Any, what: str) -> Any:
    if not items:
        raise BiasFileError(f"{path}: no {what} found")
    return items
