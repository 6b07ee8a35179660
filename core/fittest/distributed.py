"""One rank of a multi-GPU fit test, inside the fit-test child: joins the process group
the parent (``multi_launcher.py``) described in the environment, the way ``torchrun``
does (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and builds the job with the
model wrapped as the workload says:

- ``--fsdp full`` / ``--fsdp grad-op``: PyTorch FSDP2 ``fully_shard`` on every decoder
  layer and on the root, ``reshard_after_forward=True`` (FULL_SHARD, ZeRO-3 sharding) or
  ``False`` (SHARD_GRAD_OP, ZeRO-2). The model is made on the meta device and
  materialised already sharded (``to_empty`` after ``fully_shard``: the FSDP2 tutorial's
  and torchtitan's recipe), so no rank ever holds the whole model. ``--amp bf16`` becomes
  ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``; ``--offload params``
  becomes ``CPUOffloadPolicy`` (FSDP2 offloads parameters, gradients and optimizer
  states together).
- ``--zero 1|2|3``: DeepSpeed's engine, when ``deepspeed`` is importable (a clear error
  names the package otherwise), with ``offload_optimizer`` / ``offload_param`` to the CPU.
- neither: ``DistributedDataParallel`` (every rank a full replica).

NCCL on CUDA, gloo on the CPU. Standard library and torch only (deepspeed, transformers,
peft when the workload needs them); never imports cardfit: it may run under the user's
own interpreter. Called from ``workload_step.build_and_prepare`` when the spec has a
"distributed" key.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
from datetime import timedelta

# What FSDP2 shards one unit at a time: the decoder layer lists of HF / built-in models.
_LAYER_LISTS = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|decoder_layers)$")


class DistributedSetupError(RuntimeError):
    pass


def env_ranks() -> dict:
    """The torchrun variables (``DistributedSetupError`` naming a missing or bad one)."""
    out = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        value = os.environ.get(name)
        if value is None or value == "":
            raise DistributedSetupError(f"multi-GPU fit test: the environment variable {name} is not set "
                                        "(the rank must be started by cardfit's multi-GPU launcher or torchrun)")
        if name != "MASTER_ADDR":
            try:
                value = int(value)
            except ValueError:
                raise DistributedSetupError(f"multi-GPU fit test: {name}={value!r} is not a whole number") from None
        out[name] = value
    if not 0 <= out["RANK"] < out["WORLD_SIZE"]:
        raise DistributedSetupError(f"multi-GPU fit test: RANK {out['RANK']} is outside WORLD_SIZE {out['WORLD_SIZE']}")
    return out


def strategy(w: dict) -> str:
    """"fsdp", "zero" or "ddp" from the workload's fields."""
    if w.get("fsdp"):
        return "fsdp"
    if int(w.get("zero") or 0):
        return "zero"
    return "ddp"


def _import_deepspeed(stage: int):
    try:
        import deepspeed
    except ImportError as exc:
        raise DistributedSetupError(
            f"--zero {stage} needs the 'deepspeed' package in the fit-test interpreter ({exc}); install it "
            "there (pip install deepspeed) or test the same sharding with PyTorch FSDP2 instead "
            "(--fsdp grad-op for ZeRO-2, --fsdp full for ZeRO-3)") from exc
    return deepspeed


def _fsdp_api(torch):
    """FSDP2's public names (torch >= 2.6), or their home in 2.4 / 2.5."""
    try:
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
        except ImportError as exc:
            raise DistributedSetupError(
                f"--fsdp needs FSDP2 (torch.distributed.fsdp.fully_shard, torch 2.4 or newer); this "
                f"interpreter has torch {torch.__version__}") from exc
    return fully_shard, MixedPrecisionPolicy, CPUOffloadPolicy


def init_process_group(torch, device: str) -> dict:
    """Joins the group: NCCL on CUDA (bound to this rank's device), gloo on the CPU."""
    import torch.distributed as dist

    ranks = env_ranks()
    if not dist.is_available():
        raise DistributedSetupError(f"this torch build ({torch.__version__}) has no torch.distributed")
    cuda = device.startswith("cuda")
    backend = "nccl" if cuda else "gloo"
    if cuda and not dist.is_nccl_available():
        raise DistributedSetupError(f"this torch build ({torch.__version__}) has no NCCL backend")
    if dist.is_initialized():
        return ranks
    kw = {"backend": backend, "rank": ranks["RANK"], "world_size": ranks["WORLD_SIZE"],
          "timeout": timedelta(seconds=float(os.environ.get("CARDFIT_DIST_TIMEOUT", "600")))}
    if cuda:
        kw["device_id"] = torch.device(device)  # eager NCCL init on this rank's GPU (torch >= 2.3)
    try:
        dist.init_process_group(**kw)
    except TypeError:
        kw.pop("device_id", None)
        dist.init_process_group(**kw)
    atexit.register(_shutdown)
    return ranks


def _shutdown() -> None:
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


@contextlib.contextmanager
def params_on_meta(torch):
    """Parameters made on the meta device, buffers on the real one (the rotary
    ``inv_freq`` and the like keep their computed values): accelerate's
    ``init_empty_weights(include_buffers=False)``. The real-device tensor each parameter
    is first made as is never written (``torch.empty``), so it costs no memory."""
    nn = torch.nn
    old = nn.Module.register_parameter

    def register(self, name, param):
        old(self, name, param)
        if param is not None and param.device.type != "meta":  # a meta one is kept: tied weights stay tied
            p = self._parameters[name]
            kwargs = dict(p.__dict__)
            kwargs["requires_grad"] = p.requires_grad
            self._parameters[name] = type(p)(p.to("meta"), **kwargs)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = old


def layer_units(model) -> list:
    """The modules FSDP2 shards one at a time: each decoder layer (the largest list of
    same-class blocks under a ``layers`` / ``h`` / ``blocks`` name)."""
    import torch

    best: list = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and _LAYER_LISTS.search(name) and len(mod) > len(best):
            best = list(mod)
    return best


def _local(t):
    return t._local_tensor if hasattr(t, "_local_tensor") else t


def _reinit(torch, model, std: float) -> None:
    """Random values for the shards ``to_empty`` left uninitialised (HF's _init_weights:
    normal(0, initializer_range) for matrices; ones for norm weights, zeros for biases)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            loc = _local(p)
            if loc.dim() > 1:
                loc.normal_(0.0, std)
            elif name.endswith("bias"):
                loc.zero_()
            else:
                loc.fill_(1.0)


def wrap_fsdp(torch, model, w: dict, device: str, notes: list, init_std: float = 0.02):
    """FSDP2 over every decoder layer and the root; returns the model (now an FSDPModule)."""
    fully_shard, MixedPrecisionPolicy, CPUOffloadPolicy = _fsdp_api(torch)
    from torch.distributed.device_mesh import init_device_mesh
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    world = dist.get_world_size()
    mesh = init_device_mesh("cuda" if cuda else "cpu", (world,))
    full = w.get("fsdp") == "full"
    kw = {"mesh": mesh, "reshard_after_forward": full}
    amp = w.get("amp", "none") if w.get("task") == "full" else "none"
    if amp != "none":
        # FSDP2's mixed precision: bf16 all-gathered parameters and compute, fp32 gradient
        # reduction and fp32 sharded master weights (torch.distributed.fsdp.MixedPrecisionPolicy).
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=getattr(torch, {"bf16": "bfloat16"}[amp]),
                                               reduce_dtype=torch.float32)
    offload = w.get("offload", "none")
    if offload != "none":
        if cuda:
            kw["offload_policy"] = CPUOffloadPolicy(pin_memory=True)
        else:
            notes.append("CPU offload has no effect when the ranks run on the CPU")
    units = layer_units(model)
    for unit in units:
        fully_shard(unit, **kw)
    # The root (embeddings, final norm, head) keeps its gathered parameters from forward
    # into backward, which starts with it: fully_shard's documented choice for the root
    # (its default since torch 2.6; resharding it also fails in backward on gloo).
    fully_shard(model, **{**kw, "reshard_after_forward": False})
    # Buffers are not sharded; to_empty would leave them uninitialised, so keep them.
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    init_device = "cpu" if "offload_policy" in kw else device
    model.to_empty(device=init_device)
    for name, b in saved.items():
        owner, _, leaf = name.rpartition(".")
        mod = model.get_submodule(owner) if owner else model
        mod._buffers[leaf] = b.to(device)
    _reinit(torch, model, init_std)
    local = sum(_local(p).numel() for p in model.parameters())
    notes.append(f"this rank holds {local} parameter elements of the model's {sum(p.numel() for p in model.parameters())}")
    notes.append(f"FSDP2 fully_shard ({'FULL_SHARD' if full else 'SHARD_GRAD_OP'}, reshard_after_forward="
                 f"{full}) over {len(units)} layers + root (kept gathered), {world} ranks"
                 + (f", mixed precision {amp} params / fp32 reduce" if amp != "none" else "")
                 + (", CPUOffloadPolicy" if "offload_policy" in kw else ""))
    return model


def wrap_ddp(torch, model, device: str, notes: list):
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        out = DDP(model, device_ids=[index], output_device=index)
    else:
        out = DDP(model)
    notes.append(f"DistributedDataParallel over {torch.distributed.get_world_size()} ranks "
                 "(full replica per rank, 25 MiB gradient buckets)")
    return out


def deepspeed_config(w: dict) -> dict:
    """The DeepSpeed config the workload describes (docs: deepspeed.ai/docs/config-json)."""
    stage = int(w.get("zero") or 0)
    task, amp, dtype = w.get("task"), w.get("amp", "none"), w.get("dtype", "bf16")
    half = amp if (task == "full" and amp != "none") else (dtype if dtype in ("bf16", "fp16") else None)
    zero: dict = {"stage": stage}
    offload = w.get("offload", "none")
    if offload in ("optimizer", "params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload == "params" and stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": int(w.get("batch", 1)),
        "gradient_accumulation_steps": int(w.get("grad_accum", 1)),
        "zero_optimization": zero,
        "bf16": {"enabled": half == "bf16"},
        "fp16": {"enabled": half == "fp16"},
        # cardfit's own torch optimizer (as the single-GPU test makes it), also with offload.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def build_and_prepare_distributed(spec: dict, torch, device: str):
    """``workload_step.build_and_prepare`` for one rank of a multi-GPU run: a ``Job``."""
    import workload_step as ws

    w = dict(spec.get("workload", {}))
    config = spec["config"]
    task = w.get("task", "infer")
    kind = strategy(w)
    if task == "infer":
        raise DistributedSetupError("the multi-GPU fit test runs training (FSDP / ZeRO / DDP); "
                                    "test inference on one GPU")
    deepspeed = _import_deepspeed(int(w.get("zero") or 0)) if kind == "zero" else None  # before joining: every rank fails alike
    if kind == "fsdp":
        _fsdp_api(torch)
    ranks = init_process_group(torch, device)
    world = ranks["WORLD_SIZE"]
    notes: list[str] = [f"rank {ranks['RANK']} of {world} ({'nccl' if device.startswith('cuda') else 'gloo'})"]
    torch.manual_seed(int(spec.get("seed", 0)) + ranks["RANK"])  # a different batch per rank, as a sampler gives

    builder = spec.get("builder", "auto")
    if builder in ("auto", "hf"):
        try:
            import transformers  # noqa: F401 -- importable: the HF class is built
            builder = "hf"
        except ImportError:
            if builder == "hf":
                raise ws.MissingPackage("builder 'hf' needs transformers in the fit-test interpreter")
            builder = "builtin"
    if w.get("dtype") in ("int8", "nf4", "fp4"):
        raise DistributedSetupError(f"the multi-GPU fit test does not shard {w['dtype']} weights; "
                                    "test --dtype bf16 or fp32")
    meta = kind == "fsdp"
    zero3 = kind == "zero" and int(w.get("zero") or 0) == 3
    build_device = "cpu" if meta else device
    ctx = contextlib.nullcontext()
    if meta:
        ctx = params_on_meta(torch)
    elif zero3:  # partitioned while it is made: no rank holds the whole model
        ctx = deepspeed.zero.Init(config_dict_or_path=deepspeed_config(w), remote_device="cpu"
                                  if w.get("offload") == "params" else None)
    with ctx:
        if builder == "hf":
            from hf_build import build_hf

            model, more = build_hf(torch, config, w, build_device)
        else:
            from builtin_model import build_builtin

            model, more = build_builtin(torch, config, w, build_device)
    notes += more

    params = sum(_numel(p) for p in model.parameters())
    vocab = int(config.get("vocab_size") or config.get("text_config", {}).get("vocab_size"))
    batch, seq = int(w.get("batch", 1)), int(w.get("seq", 512))
    accum = int(w.get("grad_accum", 1))
    frozen = int(w.get("frozen_layers", 0))
    if task in ("lora", "qlora"):
        model = ws._add_lora(torch, model, w, builder, notes)
    elif frozen:
        ws._freeze_first_layers(model, frozen, notes)
    if task == "galore":
        raise DistributedSetupError("GaLore does not run under FSDP / ZeRO / DDP sharding; test it on one GPU")
    if w.get("optim") in ("adamw8bit", "paged-adamw8bit"):
        raise DistributedSetupError(f"--optim {w['optim']} (bitsandbytes) is not tested across GPUs; "
                                    "use adamw, sgd or sgd-momentum")
    if w.get("grad_ckpt"):
        if builder == "hf":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing = True
    model.train()
    n_trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)

    amp = w.get("amp", "none") if task == "full" else "none"
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    autocast_dtype = None
    total = int(spec.get("warmup", 1)) + int(spec.get("steps", 3))
    count = {"n": 0}

    if kind == "zero":
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = ws.make_optimizer(torch, model, trainable, w, notes)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=deepspeed_config(w))
        notes.append(f"DeepSpeed {deepspeed.__version__} ZeRO stage {w['zero']}"
                     + (f", offload {w['offload']} to CPU" if w.get("offload", "none") != "none" else ""))

        def ds_step(mark):
            for _ in range(accum):
                ids = torch.randint(0, vocab, (batch, seq), device=device)
                out = engine(input_ids=ids, labels=ids)
                mark("forward")
                engine.backward(out.loss)
                del out
                mark("backward")
                engine.step()  # steps the optimizer at the accumulation boundary
            mark("optimizer")
            _end_of_run(torch, count, total)

        return ws.Job(builder, engine, ds_step, batch * seq * accum, params, n_trainable, notes)

    if kind == "fsdp":
        if amp == "fp16":
            raise DistributedSetupError("--fsdp with --amp fp16 needs a sharded gradient scaler; use --amp bf16")
        model = wrap_fsdp(torch, model, w, device, notes, float(config.get("initializer_range") or 0.02))
    else:
        if w.get("offload", "none") != "none":
            raise DistributedSetupError("--offload needs --fsdp or --zero: plain data parallel keeps "
                                        "everything on the GPU")
        model = wrap_ddp(torch, model, device, notes)
        if amp != "none":
            autocast_dtype = getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[amp])
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = ws.make_optimizer(torch, model, trainable, w, notes)
    scaler = torch.amp.GradScaler(dev_type) if (autocast_dtype is not None and amp == "fp16") else None

    def autocast():
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(dev_type, dtype=autocast_dtype)

    def train_step(mark):
        for i in range(accum):
            ids = torch.randint(0, vocab, (batch, seq), device=device)
            # DDP: reduce gradients only at the accumulation boundary, as users do.
            sync = contextlib.nullcontext()
            if kind == "ddp" and i < accum - 1:
                sync = model.no_sync()
            with sync:
                with autocast():
                    out = model(input_ids=ids, labels=ids)
                loss = out.loss / accum
                mark("forward")
                (scaler.scale(loss) if scaler else loss).backward()
                del out, loss
                mark("backward")
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        mark("optimizer")
        opt.zero_grad(set_to_none=True)
        _end_of_run(torch, count, total)

    return ws.Job(builder, model, train_step, batch * seq * accum, params, n_trainable, notes)


def _numel(p) -> int:
    """A parameter's full element count (a DeepSpeed ZeRO-3 partition keeps it in ds_numel)."""
    return int(getattr(p, "ds_numel", 0) or p.numel())


def _end_of_run(torch, count: dict, total: int) -> None:
    """After the last step every rank waits for the others, so none exits (and closes its
    connections) while a peer is still in a collective."""
    count["n"] += 1
    if count["n"] == total:
        torch.distributed.barrier()
