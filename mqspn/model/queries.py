"""Multi-grained query set (MQS): entity-grained learnable queries plus type-grained prompt queries."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

TYPE_PROMPT = "{} is an entity type about [MASK] ."
# Ablation "w/o learnable queries": MRC-style questions in the manner of MNER-QG, u/p different ones per
# type, so that the u queries are u distinct questions through the frozen text encoder.
QUESTIONS = (
    "find all {} entities in the text .",
    "which {} entities are mentioned in the text ?",
    "what {} names appear in this post ?",
    "list every {} named in the sentence .",
    "which words of the post name a {} ?",
    "does the text mention any {} ? find it .",
    "what are the names of {} entities in the tweet ?",
    "locate the {} mentions in the text .",
    "which {} does this post talk about ?",
    "find the spans that refer to a {} .",
    "what {} is named in the post , if any ?",
    "extract each {} entity from the sentence .",
    "name the {} entities this text refers to .",
    "which phrases in the tweet are {} names ?",
    "point out every mention of a {} in the text .",
    "what mentions of {} entities does the post contain ?",
)


def type_words(types: Sequence[str], type_prompts: Mapping[str, str]) -> list[str]:
    """The words naming each type inside the prompts (`model.type_prompts`, else the type's own name)."""
    unknown = sorted(set(type_prompts) - set(types))
    if unknown:
        raise ValueError(f"model.type_prompts names {unknown}, which are not among the types {list(types)}; "
                         "fix the spelling or remove them")
    return [type_prompts.get(t, t.lower().replace("_", " ")) for t in types]


def handwritten_questions(words: Sequence[str], num_queries: int) -> list[str]:
    """u distinct questions: query j asks about type j mod p (the tiling order of the type queries) in the
    words of question template j div p."""
    p = len(words)
    if num_queries // p > len(QUESTIONS):
        raise ValueError(f"model.learnable_queries=false has {len(QUESTIONS)} questions per type, fewer than the "
                         f"{num_queries // p} that num_queries={num_queries} needs for {p} types; lower model.num_queries")
    return [QUESTIONS[j // p].format(words[j % p]) for j in range(num_queries)]


class FixedProjection(nn.Module):
    """A random (semi-)orthogonal map that never trains: a buffer, so no optimiser sees it. Orthogonal, so it
    keeps the norms and angles of the encoder states it maps."""

    def __init__(self, in_size: int, out_size: int) -> None:
        super().__init__()
        self.register_buffer("weight", nn.init.orthogonal_(torch.empty(out_size, in_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


def state_projection(kind: str, text_hidden: int, hidden: int) -> nn.Module:
    """How text-encoder states become query vectors (`model.type_query_projection`)."""
    if kind == "trained":
        return nn.Linear(text_hidden, hidden)
    if kind == "frozen":
        return FixedProjection(text_hidden, hidden)
    if text_hidden != hidden:
        raise ValueError(f"model.type_query_projection=none adds the text encoder's states (size {text_hidden}) to the "
                         f"queries (model.hidden_size={hidden}) as they are; set model.hidden_size={text_hidden}, or "
                         "model.type_query_projection to frozen or trained")
    return nn.Identity()


class QuerySet(nn.Module):
    """forward(batch_size) -> queries [B, u, hidden].

    Type-grained vectors (the [MASK] state of "<type> is an entity type about [MASK] ." through the
    frozen text encoder) are computed once at build time and stored as buffers, so a saved model needs
    no encoder pass to rebuild them. The p type vectors are tiled u/p times and added to the u
    entity-grained vectors, directly (`projection="none"`, paper) or through a fixed or trained map.
    """

    def __init__(self, num_queries: int, num_types: int, hidden: int, text_hidden: int, init_std: float = 0.02,
                 use_type_queries: bool = True, learnable: bool = True, projection: str = "none") -> None:
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
            self.register_buffer("questions", torch.zeros(u, text_hidden))
        if self.use_type_queries:
            self.register_buffer("type_states", torch.zeros(p, text_hidden))
        if self.use_type_queries or not self.learnable:
            self.project = state_projection(projection, text_hidden, hidden)

    @torch.no_grad()
    def compute_prompts(self, text_encoder, words: Sequence[str]) -> None:
        """Fill the prompt buffers with the (frozen) text encoder's states; `words`: per type, its name
        in the prompt (`type_words`)."""
        mask = text_encoder.tokenizer.mask_token
        if self.use_type_queries:
            states = [text_encoder.encode_sentence_token(TYPE_PROMPT.format(w).replace("[MASK]", mask), mask) for w in words]
            self.type_states.copy_(torch.stack(states))
        if not self.learnable:
            questions = handwritten_questions(words, len(self.questions))
            self.questions.copy_(torch.stack([text_encoder.encode_sentence(q) for q in questions]))

    def forward(self, batch_size: int) -> torch.Tensor:
        queries = self.entity if self.learnable else self.project(self.questions)
        if self.use_type_queries:
            queries = queries + self.project(self.type_states).repeat(self.repeats, 1)
        return queries.unsqueeze(0).expand(batch_size, -1, -1)
