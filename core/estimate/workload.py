"""Workload: what the user wants to run. The CLI flags of ``cardfit estimate`` map 1:1 onto
these fields (see cli/workload_args.py), and the GUI's planner form edits the same object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from cardfit.core.errors import UsageError

Task = Literal["infer", "full", "lora", "qlora", "galore"]
TASKS = ("infer", "full", "lora", "qlora", "galore")
# Weight dtypes. gptq/awq are 4-bit with group-wise fp16 scales; q*_k / q8_0 ... are GGUF types.
DTYPES = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4", "gptq", "awq", "gguf")
AMPS = ("none", "bf16", "fp16")
OPTIMS = ("adamw", "adamw8bit", "paged-adamw8bit", "sgd", "sgd-momentum", "adafactor", "lion")
ATTNS = ("sdpa", "eager", "flash")
LORA_TARGETS = ("qv", "qkvo", "all")
OFFLOADS = ("none", "optimizer", "params")


@dataclass(frozen=True)
class Workload:
    task: Task = "infer"
    dtype: str = "bf16"  # weights as loaded; with task=full and amp, the master-weight dtype
    amp: str = "none"  # autocast dtype for full fine-tuning with fp32 master weights
    optim: str = "adamw"
    batch: int = 1
    seq: int = 2048  # training sequence length
    prompt: int = 2048  # inference prompt tokens
    new: int = 256  # inference generated tokens
    kv_dtype: str | None = None  # KV cache dtype; None = the compute dtype
    grad_ckpt: bool = False
    grad_accum: int = 1
    attn: str = "sdpa"
    lora_r: int = 16
    lora_targets: str = "qv"  # PEFT's default for Llama-like models is q_proj, v_proj
    galore_rank: int = 128
    frozen_layers: int = 0
    quant_group_size: int = 128  # GPTQ / AWQ group size
    gpus: int = 1
    zero: int = 0  # DeepSpeed ZeRO stage (0 = plain data parallel)
    fsdp: str | None = None  # "full" (= ZeRO-3 sharding) or "grad-op" (= ZeRO-2)
    offload: str = "none"

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: Any) -> UsageError:
            return UsageError(f"--{name.replace('_', '-')} {value!r} is not one of {', '.join(map(str, allowed))}")

        for name, allowed in (("task", TASKS), ("amp", AMPS), ("optim", OPTIMS), ("attn", ATTNS),
                              ("lora_targets", LORA_TARGETS), ("offload", OFFLOADS)):
            if getattr(self, name) not in allowed:
                raise bad(name, getattr(self, name), allowed)
        if self.dtype not in DTYPES:
            raise bad("dtype", self.dtype, DTYPES)
        if self.kv_dtype is not None and self.kv_dtype not in ("fp32", "bf16", "fp16", "fp8", "int8", "int4"):
            raise bad("kv_dtype", self.kv_dtype, ("fp32", "bf16", "fp16", "fp8", "int8", "int4"))
        if self.zero not in (0, 1, 2, 3):
            raise bad("zero", self.zero, (0, 1, 2, 3))
        if self.fsdp not in (None, "full", "grad-op"):
            raise bad("fsdp", self.fsdp, ("full", "grad-op"))
        limits = {"batch": (1, 1 << 20), "seq": (1, 1 << 24), "prompt": (1, 1 << 24), "new": (0, 1 << 24),
                  "lora_r": (1, 1 << 16), "galore_rank": (1, 1 << 16), "gpus": (1, 1 << 12),
                  "grad_accum": (1, 1 << 20), "quant_group_size": (1, 1 << 16), "frozen_layers": (0, 1 << 20)}
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
                raise UsageError(f"--{name.replace('_', '-')} must be a whole number from {lo} to {hi}, not {v!r}")
        if self.task == "qlora" and self.dtype not in ("nf4", "fp4"):
            object.__setattr__(self, "dtype", "nf4")
        if self.task == "full" and self.dtype in ("int8", "nf4", "fp4", "gptq", "awq", "gguf"):
            raise UsageError(f"full fine-tuning cannot train {self.dtype} weights: use --task qlora or lora")
        if self.task == "galore" and self.dtype not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"GaLore trains the full weights and cannot train {self.dtype} weights: "
                             "use --dtype bf16|fp16|fp32, or --task qlora for a quantized base")
        if self.amp != "none" and self.task != "full":
            raise UsageError(f"--amp {self.amp} applies to --task full (fp32 master weights); "
                             f"--task {self.task} computes in the weights' dtype: use --amp none")
        if self.task == "full" and self.amp != "none" and self.dtype != "fp32":
            raise UsageError("--amp needs fp32 master weights (--dtype fp32); pure bf16 training is --dtype bf16 --amp none")
        if (self.zero or self.fsdp) and self.gpus < 2:
            raise UsageError("ZeRO / FSDP shard over several GPUs: add --gpus N (N >= 2)")
        if self.zero and self.fsdp:
            raise UsageError("choose one of --zero and --fsdp")
        if self.offload != "none" and not (self.zero or self.fsdp) and self.task == "infer":
            raise UsageError("--offload applies to training with ZeRO/FSDP, or to inference with --offload params")

    @property
    def training(self) -> bool:
        return self.task != "infer"

    @property
    def compute_dtype(self) -> str:
        """The dtype matmuls and activations run in."""
        if self.task == "full":
            return self.amp if self.amp != "none" else self.dtype
        if self.dtype in ("fp32", "fp16", "bf16"):
            return self.dtype
        return "bf16"  # quantized weights compute in bf16 (bitsandbytes compute dtype)

    @property
    def shard_stage(self) -> int:
        """ZeRO stage equivalent: FSDP full-shard = 3, grad-op = 2."""
        if self.fsdp == "full":
            return 3
        if self.fsdp == "grad-op":
            return 2
        return self.zero

    def tokens(self) -> int:
        return self.batch * (self.seq if self.training else self.prompt + self.new)

    def with_(self, **changes: Any) -> "Workload":
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Workload":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"unknown workload field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def label(self) -> str:
        """Short human label: 'LoRA r16 bf16, batch 4 x 2048'."""
        if self.task == "infer":
            kv = f", {self.kv_dtype} KV cache" if self.kv_dtype else ""
            return f"inference {self.dtype}, batch {self.batch}, {self.prompt}+{self.new} tokens{kv}"
        name = {"full": "full fine-tune", "lora": f"LoRA r{self.lora_r}", "qlora": f"QLoRA r{self.lora_r}",
                "galore": f"GaLore r{self.galore_rank}"}[self.task]
        prec = f"{self.dtype}+{self.amp} amp" if self.amp != "none" else self.dtype
        extra = ", grad ckpt" if self.grad_ckpt else ""
        return f"{name} {prec} {self.optim}, batch {self.batch} x {self.seq}{extra}"
