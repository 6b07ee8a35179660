"""The workload flags shared by `estimate`, `plan`, `test` and `report`: one flag per
``Workload`` field, so a workload typed on the CLI is the one the GUI's planner edits."""

from __future__ import annotations

import argparse
from dataclasses import fields

from cardfit.core.estimate.workload import (AMPS, ATTNS, DTYPES, LORA_TARGETS, OFFLOADS, OPTIMS, TASKS,
                                            Workload)


def add_workload_args(p: argparse.ArgumentParser) -> None:
    d = Workload()
    g = p.add_argument_group("workload")
    g.add_argument("--task", choices=TASKS, default=d.task,
                   help="infer, full fine-tune, LoRA, QLoRA (LoRA on an NF4 base) or GaLore (default: %(default)s)")
    g.add_argument("--dtype", choices=DTYPES, default=d.dtype,
                   help="weight dtype as loaded; for full fine-tuning with --amp, the master weights (default: %(default)s)")
    g.add_argument("--amp", choices=AMPS, default=d.amp, help="autocast dtype over fp32 master weights (default: %(default)s)")
    g.add_argument("--optim", choices=OPTIMS, default=d.optim, help="optimizer (default: %(default)s)")
    g.add_argument("--batch", type=int, default=d.batch, help="micro-batch size per GPU (default: %(default)s)")
    g.add_argument("--seq", type=int, default=d.seq, help="training sequence length (default: %(default)s)")
    g.add_argument("--prompt", type=int, default=d.prompt, help="inference prompt tokens (default: %(default)s)")
    g.add_argument("--new", type=int, default=d.new, help="inference generated tokens (default: %(default)s)")
    g.add_argument("--kv-dtype", default=None, help="KV-cache dtype: fp32, bf16, fp16, fp8, int8, int4 (default: compute dtype)")
    g.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    g.add_argument("--attn", choices=ATTNS, default=d.attn, help="attention implementation (default: %(default)s)")
    g.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank (default: %(default)s)")
    g.add_argument("--lora-targets", choices=LORA_TARGETS, default=d.lora_targets,
                   help="qv (PEFT default), qkvo, or all linear layers (default: %(default)s)")
    g.add_argument("--galore-rank", type=int, default=d.galore_rank, help="GaLore projection rank")
    g.add_argument("--frozen-layers", type=int, default=d.frozen_layers, help="freeze the first N layers (full fine-tune)")
    g.add_argument("--group-size", dest="quant_group_size", type=int, default=d.quant_group_size,
                   help="GPTQ / AWQ group size (default: %(default)s)")
    g.add_argument("--gpus", type=int, default=d.gpus, help="number of GPUs (default: %(default)s)")
    g.add_argument("--zero", type=int, default=d.zero, help="DeepSpeed ZeRO stage 0-3")
    g.add_argument("--fsdp", choices=("full", "grad-op"), default=None, help="FSDP sharding strategy")
    g.add_argument("--offload", choices=OFFLOADS, default=d.offload, help="CPU offload (default: %(default)s)")


def workload_from_args(args: argparse.Namespace) -> Workload:
    """The ``Workload`` the flags describe; ``UsageError`` names the bad flag."""
    names = {f.name for f in fields(Workload)}
    return Workload(**{k: v for k, v in vars(args).items() if k in names})


def add_card_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("card (default: the first GPU of this machine)")
    g.add_argument("--card", metavar="NAME", help="a GPU from the catalog (e.g. 4090, A100-80GB) or 'gpu0' for a detected one")
    g.add_argument("--vram", metavar="SIZE", help="a custom card of SIZE (24GB, 80GiB, 16384MiB)")
