#!/usr/bin/env bash
# How the movielens-100k board was seeded: real full test-split runs, then `r2bench submit`.
# Usage (from the repository root): leaderboards/movielens-100k/seed.sh [METHOD | METHOD=RUN_DIR ...]
# Default: the sanity baselines. METHOD runs it now (./runs/<run-id>/, kept out of git);
# METHOD=RUN_DIR submits an existing full test-split run of that method instead (e.g. one a
# long training made earlier). Each entry records the run's own command and the submit command.
# The LLM-based entries (r2rank-zero-shot, r2rank-mlp-only, tallrec, llm-listwise) take RUN_DIR only:
# their runs are made by `python bench/r2rank_cpu_learning.py --out DIR` (hours on a 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
export R2BENCH_PROGRESS="${R2BENCH_PROGRESS:-0}"

submit() {  # METHOD NAME DESCRIPTION [extra submit flags...]
    local method="$1" name="$2" desc="$3"; shift 3
    local run="${existing:-}"
    [ -n "$run" ] || run="$(r2bench run --method "$method" --dataset movielens-100k --seed 0 | tail -n 1)"
    r2bench submit "$run" --name "$name" --description "$desc" --replace --no-render "$@"
}

methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=(random popularity item-cooccurrence)
for arg in "${methods[@]}"; do
    m="${arg%%=*}"; existing=""
    [ "$m" != "$arg" ] && existing="${arg#*=}"
    case "$m" in
        random) submit random "Random" "Seeded uniform random scores: the chance line (NDCG@10 0.2272 expected)." \
                    --training-data "none" --params 0 ;;
        popularity) submit popularity "Popularity" "How often each candidate is a positive in train instances." \
                    --training-data "benchmark train split" --params 0 ;;
        item-cooccurrence) submit item-cooccurrence "Item co-occurrence" \
                    "Co-occurrence of a candidate with the history items in train users' sequences." \
                    --training-data "benchmark train split" --params 0 ;;
        sasrec) submit sasrec "SASRec" "Self-attentive sequential recommendation (RecBole 1.2.1, r2bench defaults)." --params "~0.2M" \
                    --url https://arxiv.org/abs/1808.09781 --training-data "benchmark train split" --used-val-split ;;
        bert4rec) submit bert4rec "BERT4Rec" "Bidirectional transformer with cloze training (RecBole 1.2.1, r2bench defaults)." --params "~0.2M" \
                    --url https://arxiv.org/abs/1904.06690 --training-data "benchmark train split" --used-val-split ;;
        lightgcn) submit lightgcn "LightGCN" "Graph convolution on the user-item graph, val/test histories folded in (RecBole 1.2.1)." --params "~0.17M" \
                    --url https://arxiv.org/abs/2002.02126 --training-data "benchmark train split + val/test histories" \
                    --used-val-split ;;
        r2rank-zero-shot|r2rank-mlp-only|tallrec|llm-listwise|llm-listwise-vllm|prompt4nr|r2rank-cot-*)
            [ -n "$existing" ] || { echo "$m: give the run, $m=RUN_DIR (made by bench/r2rank_cpu_learning.py, bench/r2rank_cot_ml100k.py or the command in the entry)" >&2; exit 2; } ;;&
        r2rank-zero-shot) submit r2rank "R2Rank zero-shot (SmolLM2-135M, no-cot)" \
                    "R2Rank without training: the frozen SmolLM2-135M-Instruct's Recommend vs Not Recommend margin at the decision position, no reasoning (--set no_cot=true --set head=none)." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "none" ;;
        r2rank-mlp-only) submit r2rank "R2Rank mlp-only (SmolLM2-135M frozen, no-cot)" \
                    "R2Rank's mlp-only ablation: frozen SmolLM2-135M-Instruct, no reasoning; the scoring head trained by REINFORCE under the Plackett-Luce surrogate (NDCG@10 reward, leave-one-out baseline over 8 sampled rankings; chosen over the plain baseline on val) on cached decision states of one train instance per user, early-stopped on the val split." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M \
                    --training-data "benchmark train split (last instance of each of 754 users)" --used-val-split ;;
        tallrec) submit tallrec "TALLRec (SmolLM2-135M, LoRA)" \
                    "Yes/no instruction tuning with LoRA r=8 on SmolLM2-135M-Instruct (240 train instances x 5 examples); the score is P(Yes)." \
                    --url https://arxiv.org/abs/2305.00447 --backbone "SmolLM2-135M-Instruct" --params 135M \
                    --training-data "benchmark train split (240 instances)" ;;
        llm-listwise) submit llm-listwise "LLM listwise (SmolLM2-135M via llama.cpp)" \
                    "One listwise ranking request per instance (the paper's DeepSeek-R1 protocol) to SmolLM2-135M-Instruct (Q4_1 GGUF) served by the local llama.cpp server, 160 answer tokens." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "none" ;;
        llm-listwise-vllm) submit llm-listwise "LLM listwise (SmolLM2-135M via vLLM, regex-constrained)" \
                    "One listwise ranking request per instance (the paper's DeepSeek-R1 protocol) to SmolLM2-135M-Instruct (float32) served by vLLM's CPU build, the answer constrained by a regex to 20 bracketed candidate ids (--set structured_output=regex), 160 answer tokens." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "none" ;;
        prompt4nr) submit prompt4nr "Prompt4NR (SmolLM2-135M, LoRA)" \
                    "Cloze-prompt fine-tuning, discrete relevance template (related/unrelated), LoRA r=8 on SmolLM2-135M-Instruct; 300 train instances x 5 examples, 2 epochs (the best epoch on the val split), score l(related) - l(unrelated)." \
                    --url https://arxiv.org/abs/2304.05263 --backbone "SmolLM2-135M-Instruct" --params 135M \
                    --training-data "benchmark train split (300 instances)" --used-val-split ;;
        r2rank-cot-zero-shot) submit r2rank "R2Rank CoT zero-shot (SmolLM2-135M, 64-token reasonings)" \
                    "R2Rank without training, with reasoning: SmolLM2-135M-Instruct writes a 64-token self-reflective reasoning per candidate (served by vLLM, greedy), the score is the Recommend vs Not Recommend margin at the decision position (--set head=none)." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "none" ;;
        r2rank-cot-sft) submit r2rank "R2Rank CoT after SFT (SmolLM2-135M, 64-token reasonings)" \
                    "R2Rank with reasoning after self-reflective SFT (LoRA r=16, merged) on 292 teacher responses in the Figure 2 format (a regex-constrained SmolLM2 served by vLLM as the offline teacher, kept when the decision matches the label); 64-token reasonings from vLLM, score = the decision margin (--set head=none)." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "benchmark train split (150 instances, teacher responses)" ;;
        r2rank-cot-sft-rl) submit r2rank "R2Rank CoT SFT + RL (SmolLM2-135M, 64-token reasonings)" \
                    "R2Rank with reasoning: self-reflective SFT, then RL (Algorithm 1: PPO on a LoRA policy + REINFORCE on the scoring head under Plackett-Luce with an NDCG@10 reward), rollouts written by vLLM with the adapter synced after every step; 64-token reasonings, score = the head on the decision state. Sized to what a 2-core CPU allowed: one RL step of 2 instances from a fresh head, so this is the pipeline's first real run, not a trained ranker." \
                    --backbone "SmolLM2-135M-Instruct" --params 135M --training-data "benchmark train split (150 instances of teacher responses; 2 RL instances)" ;;
        *) echo "unknown method $m" >&2; exit 2 ;;
    esac
done
r2bench leaderboard render
r2bench leaderboard validate
