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


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[t, tokens[t]]`` for ``logits [N, T, V]`` and ``tokens [N, T]`` (memory-light).

    ``logits[:, t]`` must be the prediction for ``tokens[:, t]`` (shift before calling).
    """
    logits = logits.float()
    picked = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


# ---------------------------------------------------------------------------
# The token-level policy: sampled rollouts with their old log-probs, and the
# forward pass that gives new log-probs and the decision hidden states.
# ---------------------------------------------------------------------------


@dataclass
class Rollout:
    """The sampled reasonings of K candidates laid out for one batched forward pass.

    Rows are ``[shared prompt prefix (prefix_len) | left-padded rest of the prompt |
    right-padded response (width R)]``; the prompt part is ``prompt_width`` columns
    wide, so token ``t`` of row ``i``'s response sits at column ``prompt_width + t``.
    The prefix columns are the same in every row (the instance's instructions and
    user context), which lets :func:`policy_forward` encode them once. Rows ``0..K-1`` are
    the candidates' responses (the EOS token included when the model stopped with
    it); ``response_mask`` ``[rows, R]`` marks the generated tokens that the PPO loss
    sees. The scoring head reads the hidden state at the *decision position*, defined
    exactly as in ``r2bench.r2rank.inference``: the last token of ``prompt + reasoning
    body + <answer>``, the body being the reasoning before its last ``<answer>``.
    When the response itself continues its body with those ``<answer>`` tokens, the
    decision is read in the candidate's own row (``decision_row[k] = k``); otherwise
    (unfinished, malformed, or tokenised differently) an extra row ``prompt + body +
    <answer>`` with an all-zero response mask is added for it. Causal attention makes
    both give the same hidden state as the inference path.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_width: int
    decision_row: torch.Tensor  # [K]
    decision_col: torch.Tensor  # [K]
    texts: list[str]
    finished: list[bool]
    old_logprobs: torch.Tensor | None = None
    prefix_len: int = 0

    @property
    def n_candidates(self) -> int:
        return len(self.texts)

    @property
    def response_width(self) -> int:
        return self.response_mask.shape[1]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width: self.prompt_width + self.response_width]

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
    """Lay out prompts and ``r2bench.r2rank.inference.Reasoning`` objects as a :class:`Rollout`."""
    from r2bench.lm.generation import answer_token_ids, decision_body
    from r2bench.lm.shared_prefix import pad_rows, split_prefix

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
    prefix, rests = split_prefix(rows_prompt)
    p, n = len(prefix), len(rows_prompt)
    rest_ids, rest_mask = pad_rows(rests, pad, "cpu", left=True)
    resp_ids, resp_attn = pad_rows(rows_resp, pad, "cpu", left=False)
    ids = torch.cat([torch.tensor([prefix], dtype=torch.long).expand(n, p), rest_ids, resp_ids], dim=1)
    attn = torch.cat([torch.ones((n, p), dtype=torch.long), rest_mask, resp_attn], dim=1)
    resp_mask = resp_attn.clone()
    resp_mask[k:] = 0  # the extra decision rows are read, never trained on
    width = p + rest_ids.shape[1]  # the prompt part: prefix + the widest rest of a prompt
    return Rollout(
        input_ids=ids.to(device), attention_mask=attn.to(device), response_mask=resp_mask.to(device),
        prompt_width=width, decision_row=torch.tensor(dec_row, device=device),
        decision_col=torch.tensor([width + d - 1 for d in dec_len], device=device),
        texts=[r.text for r in reasonings], finished=[bool(r.finished) for r in reasonings], prefix_len=p,
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


@dataclass
class PolicyOutput:
    logprobs: torch.Tensor  #: [rows, R] log-probs of the response tokens (0 where masked)
    hidden: torch.Tensor  #: [K, H] last-layer hidden state at each candidate's decision position


def policy_forward(model, rollout: Rollout, need_logprobs: bool = True, shared_prefix: bool = True) -> PolicyOutput:
    """One forward pass: response-token log-probs and the decision hidden states.

    With ``shared_prefix`` (default) the rollout's common prompt prefix is encoded
    once and its KV cache reused by every row (``r2bench.lm.shared_prefix``);
    ``False`` runs every row in full (same values; kept for tests and comparison).
    Only the response block goes through the LM head (the vocabulary projection of
    the prompt would cost gigabytes for a 50k vocabulary and is not needed).
    """
    from r2bench.lm.shared_prefix import prefix_forward

    p0 = rollout.prefix_len if shared_prefix else 0
    prefix = rollout.input_ids[0, :p0].tolist()
    h = prefix_forward(model, prefix, rollout.input_ids[:, p0:], rollout.attention_mask[:, p0:])
    hidden = h[rollout.decision_row, rollout.decision_col - p0]
    p, r = rollout.prompt_width - p0, rollout.response_width
    if need_logprobs:
        logits = model.get_output_embeddings()(h[:, p - 1: p + r - 1])
        lp = token_logprobs(logits, rollout.response_ids) * rollout.response_mask
    else:
        lp = torch.zeros((h.shape[0], r), device=h.device)
    return PolicyOutput(logprobs=lp, hidden=hidden)
