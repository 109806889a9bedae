"""The tiny models' tokenizer: byte-level BPE trained offline on the English sentences in
`corpus.txt`, so that common words with their leading space (" Paris", " John") are one token.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

VOCAB_SIZE = 1000
MAX_LENGTH = 128

EOS = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
MASK = "[MASK]"
# Every flavour keeps MASK in its vocabulary so that token ids agree across families; only the
# masked-language-model flavour names it as its mask token.
SPECIAL_TOKENS = (EOS, PAD, UNK, MASK)


@functools.lru_cache(maxsize=1)
def _trained_json() -> str:
    """The trained tokenizer, serialised: a string, so no caller can mutate the cached copy."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    corpus = resources.files(__package__).joinpath("corpus.txt").read_text(encoding="utf-8")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets=False as in GPT-2: " Paris" maps back to the characters " Paris".
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        # lstrip: in "is [MASK]." the mask takes the space, as " Paris" would.
        special_tokens=[AddedToken(t, special=True, lstrip=t == MASK) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus.splitlines(), trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer(*, masked: bool = False) -> PreTrainedTokenizerFast:
    """A new tokenizer for the tiny models (trained once per process, wrapped afresh each call).

    >>> tok = tiny_tokenizer()
    >>> tok.tokenize("The Eiffel Tower is located in the city of Paris")[-3:]
    ['Ġcity', 'Ġof', 'ĠParis']

    It adds no BOS token and pads on the right; `masked=True` also sets `mask_token` ("[MASK]"),
    for BERT-style models.
    """
    # Imported when first called, so that `import nbvene` does not import transformers.
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": UNK, "pad_token": PAD}
    if masked:
        special["mask_token"] = MASK
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_json()),
        padding_side="right",
        model_max_length=MAX_LENGTH,
        **special,
    )
    tokenizer.name_or_path = "nbvene-tiny"
    return tokenizer
