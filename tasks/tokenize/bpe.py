"""Train a byte-level BPE tokenizer (HF `tokenizers`) and save it as Hugging Face expects."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gristmill.conf.schema import ConfigError

EOS_TOKEN = "<|endoftext|>"  # ends every document in the packed stream (id 0)
PAD_TOKEN = "<|pad|>"  # id 1
BOS_TOKEN = "<|startoftext|>"  # id 2; starts every document in the packed stream (HF's bos_token)
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, BOS_TOKEN]


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown token
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_for_hf(tokenizer: Tokenizer, out_dir: Path, model_max_length: int) -> None:
    """tokenizer.json plus tokenizer_config.json, so `AutoTokenizer.from_pretrained(out_dir)` loads offline."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
    )
    fast.save_pretrained(str(out_dir))


def load_given(path: Path) -> Tokenizer:
    """A tokenizer.json the user supplies; it must know our end-of-text token, which separates documents."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for unreadable files
        raise ConfigError(f"tokenize.tokenizer_path {path}: not a readable tokenizer.json: {err}") from err
    missing = [t for t in (EOS_TOKEN, PAD_TOKEN) if tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.add_special_tokens(missing)  # appended at the end of the vocabulary: ids stay stable
    if tokenizer.token_to_id(BOS_TOKEN) is None:
        tokenizer.add_special_tokens([BOS_TOKEN])
    return tokenizer


def load_tokenizer(directory: Path) -> Tokenizer:
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json; run the tokenize stage first")
    return Tokenizer.from_file(str(path))
