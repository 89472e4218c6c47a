"""Multi-grained query set (MQS): entity-grained learnable queries plus type-grained prompt queries."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

TYPE_PROMPT = "{} is an entity type about [MASK] ."
# Ablation "w/o learnable queries": MRC-style questions, one per type, through the frozen text encoder.
HANDWRITTEN_QUERY = "find all {} entities in the text ."


def type_words(types: Sequence[str], type_prompts: Mapping[str, str]) -> list[str]:
    """The words naming each type inside the prompts (`model.type_prompts`, else the type's own name)."""
    return [type_prompts.get(t, t.lower().replace("_", " ")) for t in types]


class QuerySet(nn.Module):
    """forward(batch_size) -> queries [B, u, hidden].

    Type-grained vectors (the [MASK] state of "<type> is an entity type about [MASK] ." through the
    frozen text encoder) are computed once at build time and stored as buffers, so a saved model needs
    no encoder pass to rebuild them. The p type vectors are tiled u/p times and added to the u
    entity-grained vectors.
    """

    def __init__(self, num_queries: int, num_types: int, hidden: int, text_hidden: int, init_std: float = 0.02,
                 use_type_queries: bool = True, learnable: bool = True) -> None:
        super().__init__()
        u, p = num_queries, num_types
        if u % p:
            raise ValueError(f"num_queries={u} must be divisible by the number of types ({p}) to tile type queries")
        self.repeats = u // p
        self.use_type_queries = use_type_queries
        self.learnable = learnable
        if self.learnable:
            self.entity = nn.Parameter(torch.randn(u, hidden) * init_std)
        else:
            self.register_buffer("questions", torch.zeros(p, text_hidden))
            # Fixed, non-learnable offsets keep the u/p copies of one question distinguishable.
            self.register_buffer("offsets", torch.randn(u, hidden) * init_std)
        if self.use_type_queries:
            self.register_buffer("type_states", torch.zeros(p, text_hidden))
        if self.use_type_queries or not self.learnable:
            self.project = nn.Linear(text_hidden, hidden)

    @torch.no_grad()
    def compute_prompts(self, text_encoder, words: Sequence[str]) -> None:
        """Fill the prompt buffers with the (frozen) text encoder's states; `words`: per type, its name
        in the prompt (`type_words`)."""
        mask = text_encoder.tokenizer.mask_token
        if self.use_type_queries:
            states = [text_encoder.encode_sentence_token(TYPE_PROMPT.format(w).replace("[MASK]", mask), mask) for w in words]
            self.type_states.copy_(torch.stack(states))
        if not self.learnable:
            self.questions.copy_(torch.stack([text_encoder.encode_sentence(HANDWRITTEN_QUERY.format(w)) for w in words]))

    def forward(self, batch_size: int) -> torch.Tensor:
        if self.learnable:
            queries = self.entity
        else:
            queries = self.project(self.questions).repeat(self.repeats, 1) + self.offsets
        if self.use_type_queries:
            queries = queries + self.project(self.type_states).repeat(self.repeats, 1)
        return queries.unsqueeze(0).expand(batch_size, -1, -1)
