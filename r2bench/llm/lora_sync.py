"""Keep a serving engine's copy of a LoRA policy in step with the trainer (rollouts from vLLM during RL).

The trainer owns the policy; the serving engine (vLLM, started with ``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, as ``r2bench serve-local --engine vllm`` does)
writes the rollouts. After an optimizer step the trainer calls :meth:`LoRASync.publish`:

1. the adapter is saved with peft's ``save_pretrained`` (safetensors) into
   ``<folder>/<name>/``, written atomically;
2. ``POST <base_url>/load_lora_adapter {"lora_name": name, "lora_path": folder}`` loads it
   under a name of its own (``<prefix>-step-000012``): a new name per step, because vLLM
   refuses to load a name twice and because requests that name it then use exactly that
   step's weights (a response cache keyed on the model name never mixes steps);
3. the adapters older than the ``keep`` newest are unloaded
   (``POST <base_url>/unload_lora_adapter``) and their folders removed.

Rollout requests then send ``model=<the published name>``. The PPO ratio's "old" log-probs
stay the trainer's own recomputation of the sampled tokens, so the small numeric difference
between engine and trainer (kernels, dtype) sits inside the ratio, as verl and OpenRLHF
treat it.

SGLang serves adapters through its own ``/load_lora_adapter`` route with the same two
fields; full fine-tuning is not synced here (vLLM's OpenAI server has no HTTP route that
replaces the base weights; its weight sync for RL goes through an NCCL group opened by the
trainer), so the RL trainer refuses ``generator=openai`` for a policy without LoRA.
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from r2bench.atomic import atomic_path
from r2bench.errors import R2BenchError

log = logging.getLogger(__name__)


def adapter_name(prefix: str, step: int) -> str:
    return f"{prefix}-step-{step:06d}"


class LoRASync:
    """Publish the trainer's LoRA adapter to a serving engine under a new name per step."""

    def __init__(self, base_url: str, folder: str | Path, prefix: str = "policy", keep: int = 2,
                 timeout_s: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.folder = Path(folder)
        self.prefix = prefix
        self.keep = max(1, int(keep))
        self.timeout_s = timeout_s
        self.loaded: list[str] = []  # oldest first
        self.current: str | None = None

    # ------------------------------------------------------------------ HTTP
    def _post(self, route: str, body: dict[str, Any]) -> str:
        req = urllib.request.Request(f"{self.base_url}/{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return r.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise R2BenchError(f"{route} of {body.get('lora_name')!r} at {self.base_url} failed: HTTP {exc.code}: "
                               f"{detail}" + self._hint(exc.code, detail)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise R2BenchError(f"{route} of {body.get('lora_name')!r}: the server at {self.base_url} did not answer "
                               f"({exc}); is it running?") from None

    @staticmethod
    def _hint(code: int, detail: str) -> str:
        if code == 404:
            return (" (no runtime LoRA route: start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
                    "as `r2bench serve-local --engine vllm` does)")
        if "rank" in detail.lower():
            return " (the adapter's rank is above the server's --max-lora-rank)"
        return ""

    # ------------------------------------------------------------------ publishing
    def save(self, model: Any, name: str) -> Path:
        """The adapter of a peft model, saved (safetensors, atomically) as ``<folder>/<name>``."""
        if not hasattr(model, "peft_config"):
            raise R2BenchError("only a LoRA (peft) policy can be synced to a serving engine; set lora_r > 0 "
                               "(a full fine-tune would need the engine's base weights replaced every step)")
        target = self.folder / name
        if target.exists():
            shutil.rmtree(target)
        with atomic_path(target) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
        return target

    def load(self, name: str, path: str | Path) -> None:
        self._post("load_lora_adapter", {"lora_name": name, "lora_path": str(Path(path).resolve())})
        self.loaded.append(name)
        self.current = name
        log.info("loaded adapter %s into %s", name, self.base_url)

    def unload(self, name: str) -> None:
        self._post("unload_lora_adapter", {"lora_name": name})
        if name in self.loaded:
            self.loaded.remove(name)

    def publish(self, model: Any, step: int) -> str:
        """Save the adapter of ``step``, load it under its own name, drop the old ones; returns the name."""
        name = adapter_name(self.prefix, step)
        if name in self.loaded:  # already there (e.g. published again after a resume at the same step)
            self.current = name
            return name
        self.load(name, self.save(model, name))
        while len(self.loaded) > self.keep:
            old = self.loaded[0]
            try:
                self.unload(old)
            except R2BenchError as exc:  # the new adapter is in place; an old one left loaded is only memory
                log.warning("could not unload %s: %s", old, exc)
                self.loaded.remove(old)
            shutil.rmtree(self.folder / old, ignore_errors=True)
        return name

    def served_models(self) -> list[str]:
        """The names the server answers to (``GET /v1/models``): the base model and the loaded adapters."""
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=self.timeout_s) as r:
            return [m["id"] for m in json.load(r)["data"]]
