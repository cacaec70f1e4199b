"""The clipped token-level PPO objective of the paper (Eq. 6).

For candidate k with generated tokens ``o_{k,1..T_k}`` and the listwise reward
``rho(tau)`` of its instance, the paper maximises

    J(theta) = sum_k sum_t min(g_{k,t} * A_k, clip(g_{k,t}, 1-eps, 1+eps) * A_k),
    g_{k,t} = pi_theta(o_{k,t} | ...) / pi_old(o_{k,t} | ...),

with ``A_k = rho(tau)`` (no baseline: the paper). :func:`ppo_loss` returns
``-J`` with a choice of normalisation (``reduction``):

- ``"sum"``: exactly Eq. 6 summed over every valid token of the batch;
- ``"token-mean"`` (default): the same sum divided by the number of valid tokens
  in the batch. It has the same direction as ``"sum"`` (one positive factor per
  batch), but a learning rate that does not depend on the reasoning length;
- ``"seq-mean"``: the mean over tokens inside each sequence, then over sequences
  (each candidate weighs the same whatever its length; a deviation from Eq. 6).

Gradients: where the ratio leaves the trust region in the direction the advantage
pushes (``g > 1+eps`` with ``A > 0`` or ``g < 1-eps`` with ``A < 0``), the min picks
the clipped, constant term, so that token contributes no gradient. At ``g = 1``
(the first optimisation epoch on fresh rollouts) the gradient equals the policy
gradient ``A * grad log pi``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from r2bench.lm.policy import PolicyBatch

Reduction = Literal["sum", "token-mean", "seq-mean"]


@dataclass
class PPOStats:
    """Diagnostics of one PPO loss evaluation (floats, detached)."""

    clip_fraction: float  #: share of valid tokens whose ratio lies outside [1-eps, 1+eps] (the usual clipfrac)
    clip_active: float  #: share of valid tokens whose clipped term was the min (those give no gradient)
    approx_kl: float  #: mean of (ratio - 1) - log ratio over valid tokens (k3 estimator, >= 0)
    ratio_mean: float
    n_tokens: int


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    reduction: Reduction = "token-mean",
) -> tuple[torch.Tensor, PPOStats]:
    """Negated clipped PPO objective (Eq. 6) and its statistics.

    logprobs, old_logprobs, mask: ``[N, T]`` (N generated sequences, T token
    positions; ``mask`` is 1 on generated tokens that count, 0 on padding and on the
    prompt). advantages: ``[N]`` (one per sequence, broadcast over its tokens, e.g.
    ``rho(tau)`` of its instance) or ``[N, T]``.
    """
    mask = mask.to(logprobs.dtype)
    adv = advantages.detach().to(logprobs.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)
    log_ratio = (logprobs - old_logprobs.detach()) * mask
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_token = torch.minimum(unclipped, clipped) * mask
    n_tok = mask.sum()
    if reduction == "sum":
        objective = per_token.sum()
    elif reduction == "token-mean":
        objective = per_token.sum() / n_tok.clamp_min(1.0)
    elif reduction == "seq-mean":
        per_seq = per_token.sum(-1) / mask.sum(-1).clamp_min(1.0)
        has = (mask.sum(-1) > 0).to(per_seq.dtype)
        objective = (per_seq * has).sum() / has.sum().clamp_min(1.0)
    else:
        raise ValueError(f"unknown reduction {reduction!r}; expected sum, token-mean or seq-mean")
    with torch.no_grad():
        active_clip = ((clipped < unclipped) & (mask > 0)).to(logprobs.dtype)
        outside = (((ratio - 1.0).abs() > clip_eps) & (mask > 0)).to(logprobs.dtype)
        denom = float(n_tok.clamp_min(1.0))
        stats = PPOStats(
            clip_fraction=float(outside.sum()) / denom,
            clip_active=float(active_clip.sum()) / denom,
            approx_kl=float((((ratio - 1.0) - log_ratio) * mask).sum()) / denom,
            ratio_mean=float((ratio * mask).sum()) / denom,
            n_tokens=int(n_tok),
        )
    return -objective, stats



# ---------------------------------------------------------------------------
# The token-level policy's rollouts: sampled reasonings with their old log-probs,
# laid out as a batch of the policy module (``r2bench.lm.policy``), which gives the new
# log-probs and the decision hidden states in one forward pass.
# ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Rollout(PolicyBatch):
    """The sampled reasonings of K candidates laid out for one batched forward pass.

    A :class:`r2bench.lm.policy.PolicyBatch` (``Policy(lm, head)(rollout)`` gives the
    response log-probs, the decision states and the head's scores). Rows are ``[shared
    prompt prefix (prefix_len) | left-padded rest of the prompt | right-padded response
    (width R)]``; the prompt part is ``prompt_width`` columns wide, so token ``t`` of row
    ``i``'s response sits at column ``prompt_width + t``. The prefix columns are the same in
    every row (the instance's instructions and user context), which lets the policy encode
    them once. Rows ``0..K-1`` are the candidates' responses (the EOS token included when
    the model stopped with it); ``response_mask`` ``[rows, R]`` marks the generated tokens
    that the PPO loss sees. The scoring head reads the hidden state at the *decision
    position*, defined exactly as in ``r2bench.r2rank.inference``: the last token of
    ``prompt + reasoning body + <answer>``, the body being the reasoning before its last
    ``<answer>``. When the response itself continues its body with those ``<answer>``
    tokens, the decision is read in the candidate's own row (``decision_row[k] = k``);
    otherwise (unfinished, malformed, or tokenised differently) an extra row ``prompt + body
    + <answer>`` with an all-zero response mask is added for it. Causal attention makes both
    give the same hidden state as the inference path.
    """

    texts: list[str]
    finished: list[bool]
    old_logprobs: torch.Tensor | None = None

    @property
    def n_candidates(self) -> int:
        return len(self.texts)

    def select(self, cands: list[int]) -> "Rollout":
        """The rollout of a subset of candidates (their rows and their extra decision rows)."""
        need = sorted(set(cands) | {int(self.decision_row[c]) for c in cands})
        where = {r: j for j, r in enumerate(need)}
        rows = torch.tensor(need, dtype=torch.long, device=self.input_ids.device)
        return Rollout(
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows],  # extra decision rows have an all-zero mask
            prompt_width=self.prompt_width,
            decision_row=torch.tensor([where[int(self.decision_row[c])] for c in cands], device=rows.device),
            decision_col=self.decision_col[torch.tensor(cands, device=rows.device)],
            texts=[self.texts[c] for c in cands],
            finished=[self.finished[c] for c in cands],
            old_logprobs=None if self.old_logprobs is None else self.old_logprobs[rows],
            prefix_len=self.prefix_len,
        )


def build_rollout(tokenizer, prompt_ids, reasonings, max_new_tokens: int, eos_id: int | None, device) -> Rollout:
    """Lay out prompts and ``r2bench.lm.generation.Reasoning`` objects as a :class:`Rollout`."""
    from r2bench.lm.generation import answer_token_ids, decision_body
    from r2bench.lm.policy import layout_rows

    open_ids = answer_token_ids(tokenizer)["open"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    k = len(prompt_ids)
    responses, extras, dec_row, dec_len = [], [], [], []
    for i, r in enumerate(reasonings):
        resp = list(r.token_ids)
        if not r.finished and len(resp) < max_new_tokens and eos_id is not None:
            resp.append(int(eos_id))  # the model chose to stop: that action is part of the response
        responses.append(resp)
        body = decision_body(tokenizer, r.token_ids)
        if list(r.token_ids[len(body): len(body) + len(open_ids)]) == open_ids:
            dec_row.append(i)
        else:
            dec_row.append(k + len(extras))
            extras.append((i, body + open_ids))
        dec_len.append(len(body) + len(open_ids))
    rows_prompt = [prompt_ids[i] for i in range(k)] + [prompt_ids[i] for i, _ in extras]
    rows_resp = responses + [seq for _, seq in extras]
    b = layout_rows(rows_prompt, rows_resp, pad, device)
    b.response_mask[k:] = 0  # the extra decision rows are read, never trained on
    return Rollout(
        input_ids=b.input_ids, attention_mask=b.attention_mask, response_mask=b.response_mask,
        prompt_width=b.prompt_width, prefix_len=b.prefix_len, decision_row=torch.tensor(dec_row, device=device),
        decision_col=torch.tensor([b.prompt_width + d - 1 for d in dec_len], device=device),
        texts=[r.text for r in reasonings], finished=[bool(r.finished) for r in reasonings],
    )


@torch.no_grad()
def sample_rollout(model, tokenizer, prompt_ids, max_new_tokens: int, *, greedy: bool = False,
                   temperature: float = 1.0, generator: torch.Generator | None = None) -> Rollout:
    """Sample (or greedily decode) one reasoning per prompt with the shared-prefix generator."""
    from r2bench.lm.generation import generate_reasonings

    reasonings = generate_reasonings(
        model, tokenizer, prompt_ids, max_new_tokens=max_new_tokens, do_sample=not greedy,
        temperature=temperature, top_p=1.0, generator=generator,
    )
    return rollout_of(model, tokenizer, prompt_ids, reasonings, max_new_tokens)


def rollout_of(model, tokenizer, prompt_ids, reasonings, max_new_tokens: int) -> Rollout:
    """:func:`build_rollout` on the model's device with its EOS token."""
    from r2bench.lm.generation import eos_ids

    eos = tokenizer.eos_token_id
    if eos is None:
        stops = sorted(eos_ids(model, tokenizer))
        eos = stops[0] if stops else None
    device = model.get_output_embeddings().weight.device
    return build_rollout(tokenizer, prompt_ids, reasonings, max_new_tokens, eos, device)
