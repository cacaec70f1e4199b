"""The policy module: one ``nn.Module`` whose ``forward`` does a trainer's whole pass.

Every LLM trainer (R2Rank's SFT and RL, TALLRec, Prompt4NR, R2ec) trains through
:class:`Policy`: the language model (a Hugging Face causal LM, optionally peft-wrapped)
and an optional head, with ONE ``forward`` that runs

1. the shared-prefix pass over a :class:`PolicyBatch` (rows sharing a prompt prefix:
   the prefix is encoded once and its KV cache repeated for every row,
   ``r2bench.lm.shared_prefix``; gradients of all rows flow back into it);
2. the last-layer hidden states at requested (row, column) *decision positions*, and the
   head's output on them when the policy has a head;
3. the log-probs of the response tokens under a response mask, with only the response
   block going through the LM head (a 150k vocabulary over a 1,000-token prompt would
   cost gigabytes and is not needed);
4. optionally the logits of a few vocabulary ids at requested positions (answer words:
   TALLRec's ``Yes``/``No``, Prompt4NR's ``related``/``unrelated``).

Why one forward: distributed engines see a model through its ``forward``.
DistributedDataParallel prepares its gradient reduction in ``forward`` (calling the
decoder, the head and the LM-head slice on ``.module`` leaves gradients different across
ranks); FSDP2 gathers the sharded parameters in the root module's forward hooks (calls
made piecewise fail with "mixed torch.Tensor and DTensor"); DeepSpeed ZeRO-3 gathers
parameters inside module forwards. Computing everything that needs a trainable parameter
inside ``Policy.forward`` makes DDP, FSDP2 and DeepSpeed ZeRO (``r2bench.lm.engine``) work
unchanged. What a trainer does with the outputs (losses, Plackett-Luce, PPO clipping) may
happen outside: it touches no parameter.

Layout of a batch (the layout of R2Rank's rollouts, ``r2bench.r2rank.ppo.Rollout``, which
is a :class:`PolicyBatch`)::

    columns  [0, prefix_len)            the shared prefix: the same tokens in every row
             [prefix_len, prompt_width) the rest of each prompt, left-padded
             [prompt_width, +R)         the response block, right-padded (R = response_width)

Token ``t`` of row ``i``'s response sits at column ``prompt_width + t`` and is predicted
at column ``prompt_width + t - 1``; ``response_mask [rows, R]`` (1 = a token whose
log-prob is wanted) selects them. Position ids follow the attention mask, so padding
changes nothing. Rows that share no prefix (``prefix_len = 0``) are run in full.

API (stable; the trainable baselines build on it):

- :class:`PolicyBatch` (``input_ids``, ``attention_mask``, ``prefix_len``, ``prompt_width``,
  ``response_mask``, ``decision_row``/``decision_col``, ``logit_row``/``logit_col``/``vocab_ids``);
- :func:`layout_rows` (prompts + responses -> a batch), :func:`last_position_batch`
  (prompts whose last token is the decision/answer position);
- :class:`Policy` (``Policy(lm, head=None)``; ``forward(batch, *, logprobs=True,
  shared_prefix=True, head_grad_to_lm=True)`` or ``forward(states=h)``) ->
  :class:`PolicyOutput` (``logprobs``, ``hidden``, ``scores``, ``vocab_logits``);
- :func:`token_logprobs`, :func:`response_nll` (summed cross-entropy of the masked response tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from r2bench.lm.shared_prefix import pad_rows, prefix_forward, split_prefix

__all__ = ["Policy", "PolicyBatch", "PolicyOutput", "last_position_batch", "layout_rows", "response_nll",
           "token_logprobs"]


@dataclass
class PolicyBatch:
    """Token rows laid out for one :meth:`Policy.forward` (the layout is in the module docstring).

    Every tensor lives on the model's device. Fields:

    - ``input_ids``, ``attention_mask`` ``[rows, W]`` (long; the mask is 0 on padding);
    - ``prefix_len``: columns ``[0, prefix_len)`` hold the same tokens in every row and are
      encoded once (0 = no shared prefix);
    - ``prompt_width``: the column where the response block starts (``W`` when there is none);
    - ``response_mask`` ``[rows, R]``: the response tokens whose log-probs are wanted
      (None = no response block);
    - ``decision_row``, ``decision_col`` ``[P]``: the positions whose last-layer hidden state is
      read (and scored by the head); None = none;
    - ``logit_row``, ``logit_col`` ``[Q]`` and ``vocab_ids`` ``[V']``: positions where the
      logits of a few vocabulary ids are wanted (answer words); None = none.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prefix_len: int = 0
    prompt_width: int | None = None
    response_mask: torch.Tensor | None = None
    decision_row: torch.Tensor | None = None
    decision_col: torch.Tensor | None = None
    logit_row: torch.Tensor | None = None
    logit_col: torch.Tensor | None = None
    vocab_ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.prompt_width is None:
            self.prompt_width = self.input_ids.shape[1] - (0 if self.response_mask is None else self.response_mask.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def response_width(self) -> int:
        return 0 if self.response_mask is None else int(self.response_mask.shape[1])

    @property
    def response_ids(self) -> torch.Tensor:
        """``[rows, R]``: the tokens of the response block."""
        return self.input_ids[:, self.prompt_width: self.prompt_width + self.response_width]


@dataclass
class PolicyOutput:
    """What :meth:`Policy.forward` computed (None where it was not asked for)."""

    #: ``[rows, R]`` log-probs of the response tokens, 0 where ``response_mask`` is 0
    logprobs: torch.Tensor | None = None
    #: ``[P, H]`` last-layer hidden states at the decision positions (the model's dtype)
    hidden: torch.Tensor | None = None
    #: ``head(hidden)`` in float32, float64 if the head is (``[P]`` for R2Rank's scoring head; whatever the head returns)
    scores: torch.Tensor | None = None
    #: ``[Q, V']`` logits of ``vocab_ids`` at the logit positions, float32
    vocab_logits: torch.Tensor | None = None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[t, tokens[t]]`` for ``logits [N, T, V]`` and ``tokens [N, T]`` (memory-light).

    ``logits[:, t]`` must be the prediction for ``tokens[:, t]`` (shift before calling).
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def response_nll(out: PolicyOutput, batch: PolicyBatch,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy (negative log-likelihood) of the masked response tokens, and their count.

    ``weights`` ``[rows]`` multiply each row's tokens (a zero-weight repeat adds nothing; the count
    is of the rows with a non-zero weight)."""
    if out.logprobs is None or batch.response_mask is None:
        raise ValueError("response_nll needs a batch with a response block and logprobs=True")
    mask = batch.response_mask.to(out.logprobs.dtype)
    if weights is not None:
        w = weights.to(device=mask.device, dtype=mask.dtype)[:, None]
        return -(out.logprobs * mask * w).sum(), int((mask * (w != 0)).sum())
    return -(out.logprobs * mask).sum(), int(mask.sum())


class Policy(nn.Module):
    """The language model (``lm``: HF causal LM or a peft model) and an optional ``head`` in one module.

    ``head`` maps the hidden states at the decision positions ``[P, H]`` (cast to the head's
    dtype) to anything (R2Rank's :class:`r2bench.r2rank.head.ScoringHead`: scores ``[P]``; R2ec: an
    embedding projection). Hold every trainable parameter of a method here, and call the
    *prepared* policy (``r2bench.lm.engine.Engine.prepare``) for every pass that needs
    gradients. No-gradient passes (rollouts, evaluation) may use the unwrapped module or the
    LM directly (``r2bench.lm.generation``); under FSDP2 inside ``Engine.full_parameters``.
    """

    def __init__(self, lm: Any, head: nn.Module | None = None):
        super().__init__()
        self.lm = lm
        self.head = head

    def forward(self, batch: PolicyBatch | None = None, *, logprobs: bool = True, shared_prefix: bool = True,
                head_grad_to_lm: bool = True, states: torch.Tensor | None = None) -> PolicyOutput:
        """One pass over ``batch`` (see the module docstring), or the head alone on given ``states``.

        - ``logprobs``: compute the response log-probs (when the batch has a response block);
        - ``shared_prefix``: encode ``batch.prefix_len`` columns once (False runs every row in
          full: the same values, kept for tests and comparison);
        - ``head_grad_to_lm``: let the head's gradient flow into the LM through the hidden
          states (False detaches them before the head; the LM still gets the log-probs' gradient);
        - ``states`` ``[P, H]``: precomputed decision states (a frozen LM: R2Rank's ``mlp-only``):
          only the head runs; ``batch`` must be None.
        """
        if states is not None:
            if batch is not None or self.head is None:
                raise ValueError("states= runs the head alone: pass no batch, and build the Policy with a head")
            return PolicyOutput(hidden=states, scores=self._score(states))
        if batch is None:
            raise ValueError("Policy.forward needs a PolicyBatch (or states=)")
        p0 = batch.prefix_len if shared_prefix else 0
        h = prefix_forward(self.lm, batch.input_ids[0, :p0], batch.input_ids[:, p0:], batch.attention_mask[:, p0:])
        out = PolicyOutput()
        if batch.decision_row is not None:
            hidden = h[batch.decision_row, batch.decision_col - p0]
            out.hidden = hidden
            if self.head is not None:
                out.scores = self._score(hidden if head_grad_to_lm else hidden.detach())
        lm_head = None
        if logprobs and batch.response_mask is not None:
            lm_head = self.lm.get_output_embeddings()
            p, r = batch.prompt_width - p0, batch.response_width
            if p < 1:
                raise ValueError("the response block needs at least one prompt column before it (prefix_len too long)")
            logits = lm_head(h[:, p - 1: p + r - 1])
            out.logprobs = token_logprobs(logits, batch.response_ids) * batch.response_mask
        if batch.vocab_ids is not None:
            lm_head = lm_head or self.lm.get_output_embeddings()
            logits = lm_head(h[batch.logit_row, batch.logit_col - p0])
            out.vocab_logits = logits[:, batch.vocab_ids].float()
        return out

    def _score(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head on ``hidden`` cast to the head's dtype; the result in float32 (float64 stays float64)."""
        w = next(self.head.parameters(), None)
        s = self.head(hidden.to(w.dtype) if w is not None and w.is_floating_point() else hidden.float())
        return s if s.dtype == torch.float64 else s.float()


def _long(values: Sequence[int], device: Any) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)


def layout_rows(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, device: Any,
                *, shared_prefix: bool = True) -> PolicyBatch:
    """Rows ``prompt + response`` in the :class:`PolicyBatch` layout; ``response_mask`` marks every response token.

    The prompts' longest common prefix (leaving each prompt at least one token of its own)
    becomes the shared prefix; ``shared_prefix=False`` keeps ``prefix_len = 0`` (the same
    columns, every row run in full). Add decision or logit positions to the result as needed
    (columns are absolute: response token ``t`` of a row is at ``prompt_width + t``).
    """
    if len(prompts) != len(responses) or not prompts:
        raise ValueError("layout_rows needs one response per prompt, and at least one row")
    prefix, rests = split_prefix(prompts)
    if not shared_prefix:
        prefix, rests = [], [list(p) for p in prompts]
    p, n = len(prefix), len(prompts)
    rest_ids, rest_mask = pad_rows(rests, pad_id, "cpu", left=True)
    resp_ids, resp_mask = pad_rows(responses, pad_id, "cpu", left=False)
    ids = torch.cat([torch.tensor([prefix], dtype=torch.long).expand(n, p), rest_ids, resp_ids], dim=1)
    attn = torch.cat([torch.ones((n, p), dtype=torch.long), rest_mask, resp_mask], dim=1)
    return PolicyBatch(input_ids=ids.to(device), attention_mask=attn.to(device), prefix_len=p,
                       prompt_width=p + rest_ids.shape[1], response_mask=resp_mask.to(device))


def last_position_batch(prompts: Sequence[Sequence[int]], pad_id: int, device: Any, *,
                        vocab_ids: Sequence[int] | None = None, decisions: bool = True,
                        shared_prefix: bool = True) -> PolicyBatch:
    """Prompts left-padded so that each one's last token is in the last column, which is read.

    ``decisions``: the hidden state there (and the head's score; R2ec's item embeddings);
    ``vocab_ids``: the logits of those ids there (answer words: TALLRec ``Yes``/``No``,
    Prompt4NR). There is no response block.
    """
    prefix, rests = split_prefix(prompts)
    if not shared_prefix:
        prefix, rests = [], [list(p) for p in prompts]
    p, n = len(prefix), len(prompts)
    rest_ids, rest_mask = pad_rows(rests, pad_id, "cpu", left=True)
    ids = torch.cat([torch.tensor([prefix], dtype=torch.long).expand(n, p), rest_ids], dim=1).to(device)
    attn = torch.cat([torch.ones((n, p), dtype=torch.long), rest_mask], dim=1).to(device)
    rows = torch.arange(n, device=device)
    last = torch.full((n,), ids.shape[1] - 1, dtype=torch.long, device=device)
    return PolicyBatch(
        input_ids=ids, attention_mask=attn, prefix_len=p,
        decision_row=rows if decisions else None, decision_col=last if decisions else None,
        logit_row=rows if vocab_ids is not None else None, logit_col=last if vocab_ids is not None else None,
        vocab_ids=_long(vocab_ids, device) if vocab_ids is not None else None,
    )
