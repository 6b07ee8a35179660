"""Replays the allocations of a training step through the caching-allocator model
(allocator.py), to find how much memory the allocator reserves beyond what the tensors
use at their peak: the "allocator_reserve" term of a training estimate.

The step is the loop the fit test runs and users write (forward with labels, backward,
``optimizer.step()``, ``zero_grad(set_to_none=True)``), two passes of it, as tensors in
the order PyTorch makes and frees them:

- build: the weights, in ``model.parameters()`` order, and a tied model's output layer,
  built and dropped;
- the cuBLAS workspaces the first forward and the first backward make (one per thread),
  kept for the process's life;
- forward: per layer the tensors autograd saves (estimator._layer_saved), the residual
  stream; under gradient checkpointing only each layer's input; under autocast the
  16-bit copy of each weight; then the logits (Gemma 2: / cap, tanh, * cap, the tanh kept),
  their fp32 upcast and log_softmax's output (transformers loss_utils.ForCausalLMLoss);
- backward: the logits' gradients, then per layer, MLP half first, the gradients of its
  activations (freed within the layer), the parameters' gradients (kept until
  ``zero_grad``), the saved tensors freed (k and v, which the returned cache holds, only
  after backward); under checkpointing the layer recomputed first; a tied output layer's
  gradient summed with the embedding's out of place;
- optimizer: at the first step its states, lazily, parameter by parameter
  (torch.optim.AdamW ``_init_group``, bitsandbytes ``init_state``, SGD's momentum clone);
  foreach AdamW's parameter-sized temporaries (``torch._foreach_sqrt``), all at once.

Every layer is replayed: the reserve is not a smooth function of the depth (which holes a
block finds depends on the sizes of all the others), so a shallow replay cannot be scaled
up. Only a config deeper than any published model (over ``MAX_REPLAY_LAYERS``) is replayed
at two depths and extrapolated linearly. One replay of an 8B model costs about 10 ms, so
results are cached per plan.

Checked against the peak torch reserved minus allocated of every measured training run
(tests/data/gpu_measure_h*_part*.jsonl): e.g. 3.29 GiB replayed vs 3.37 measured for
full-llama-3.2-1b-bf16-adamw-b8-s1024, 7.07 vs 7.21 for full-qwen3-0.6b-bf16-adamw-b16-s1024.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from cardfit.core.estimate.allocator import AllocatorModel
from cardfit.core.estimate.coefficients import CUBLAS_WORKSPACE

MAX_REPLAY_LAYERS = 256  # Llama 3.1 405B, the deepest model in the catalog, has 126


@dataclass(frozen=True)
class Param:
    """One parameter tensor: its bytes as stored, its gradient's (0 when frozen), the
    optimizer states made at the first step, the step's temporary, and which half of a
    decoder layer it belongs to ("attn", "mlp"; "embed" and "head" outside the layers)."""

    weight: int
    grad: int
    states: tuple[int, ...] = ()
    temp: int = 0
    part: str = "embed"
    autocast_copy: int = 0  # 16-bit copy autocast makes of it in the forward (0: none)
    grad_via: int = 0  # 16-bit gradient cast up into ``grad`` (autocast), else 0


@dataclass(frozen=True)
class StepPlan:
    embed: tuple[Param, ...]  # before the layers in model.parameters()
    layer_kinds: tuple[tuple[Param, ...], ...]  # one layer's parameters, per kind of layer
    layer_runs: tuple[tuple[int, int], ...]  # (kind, how many layers) in order: dense / MoE, frozen / trained
    head: tuple[Param, ...]  # after the layers (an untied output layer)
    saved: tuple[tuple[str, int], ...]  # one layer's saved tensors: (part, bytes), forward order
    hidden: int  # one hidden-state tensor (tokens x hidden x compute bytes)
    layer_input: int  # what checkpointing keeps per layer
    grad_ckpt: bool
    mlp_grad: int  # tokens x MLP width x compute bytes
    attn_grads: tuple[int, ...]  # gradients of the attention output, then of q, k, v
    final_norm: tuple[int, ...]  # the final norm's saved tensors
    logits: int  # tokens x vocab x compute bytes (the model's output, kept until `del out`)
    logits_fp32: int  # the fp32 upcast (0 when the logits are fp32 already)
    log_softmax: int  # tokens x vocab x 4
    softcap: int = 0  # Gemma 2's tanh soft-capping keeps one more logits-sized tensor
    micro_steps: int = 1  # gradient accumulation
    tied_embeddings: bool = False
    foreach_temps: bool = False  # one temporary per parameter at once (foreach AdamW)
    stepwise_temps: bool = False  # temporaries one parameter at a time (GaLore's SVD)
    # A tied output layer is built (vocab x hidden) after the layers and then replaced by
    # the embedding: its block is freed but stays reserved, a hole an embedding-sized
    # optimizer state fits (trace-full-gemma-2-2b-bf16-adamw-b1-s3072-ckpt; without it the
    # second pass's logits found a hole the real run did not have: 1.5 GiB short).
    tied_transient: int = 0

    @property
    def layers(self) -> int:
        return sum(n for _, n in self.layer_runs)

    def layer_params(self) -> list[tuple[Param, ...]]:
        """Each layer's parameters, layer by layer."""
        return [self.layer_kinds[k] for k, n in self.layer_runs for _ in range(n)]


def replay(plan: StepPlan, steps: int = 2) -> AllocatorModel:
    a = AllocatorModel()
    per_layer = plan.layer_params()
    # Every parameter in model.parameters() order, keyed for its gradient; each layer's
    # halves in backward order (reverse of the forward's).
    everything: list[tuple[object, Param]] = [(("e", j), p) for j, p in enumerate(plan.embed)]
    halves: list[dict[str, list[tuple[object, Param]]]] = []
    for l, params in enumerate(per_layer):
        mine = [((l, j), p) for j, p in enumerate(params)]
        everything += mine
        halves.append({part: [x for x in reversed(mine) if x[1].part == part] for part in ("attn", "mlp")})
    everything += [(("h", j), p) for j, p in enumerate(plan.head)]
    for _, p in everything:
        a.malloc(p.weight)
    if plan.tied_transient:
        a.free(a.malloc(plan.tied_transient))
    embed = [(("e", j), p) for j, p in enumerate(plan.embed)]
    head = [(("h", j), p) for j, p in enumerate(plan.head)]
    if plan.tied_embeddings and not head:
        head = embed  # the output layer is the embedding: its gradient comes first
    states_made = False
    saved_attn = [b for part, b in plan.saved if part in ("attn", "kv")]
    # transformers' forward returns a DynamicCache even in training (config.use_cache, off
    # under gradient checkpointing): sdpa's saved k and v are the cache's, held by the
    # output until ``del out`` after backward (trace-full-llama-3.2-1b-bf16-adamw-b8-s1024:
    # 16 x 2 blocks of 8 MiB freed last)
    kv_at = frozenset(j for j, (part, _) in enumerate(x for x in plan.saved if x[0] in ("attn", "kv"))
                      if part == "kv")
    saved_mlp = [b for part, b in plan.saved if part == "mlp"]
    for _ in range(steps):
        grads: dict[object, int] = {}
        for micro in range(plan.micro_steps):
            _forward_backward(a, plan, halves, embed, head, saved_attn, saved_mlp, kv_at, grads, micro > 0,
                              first=not states_made and micro == 0)
        if not states_made:
            for _, p in everything:
                for s in p.states:
                    a.malloc(s)
            states_made = True
        if plan.foreach_temps:
            temps = [a.malloc(p.temp) for _, p in everything if p.temp]
            for t in temps:
                a.free(t)
        elif plan.stepwise_temps:
            for _, p in everything:
                if p.temp:
                    a.free(a.malloc(p.temp))
        for g in grads.values():
            a.free(g)
    return a


def _grad(a: AllocatorModel, p: Param, i: object, grads: dict[object, int], accumulate: bool) -> None:
    """The parameter's gradient as autograd's AccumulateGrad makes it: the first one is
    kept as ``.grad``; a later one (tied weights, gradient accumulation) is a temporary
    added in place."""
    if not p.grad:
        return
    via = a.malloc(p.grad_via) if p.grad_via else -1
    if i in grads or accumulate:
        a.free(a.malloc(p.grad))
    else:
        grads[i] = a.malloc(p.grad)
    a.free(via)


def _forward_backward(a, plan, halves, embed, head, saved_attn, saved_mlp, kv_at, grads, accumulate,
                      first: bool = False) -> None:
    hidden = a.malloc(plan.hidden)
    if first:
        # cuBLAS's workspace, made by the first matmul and kept for the process's life;
        # autograd's backward thread gets a handle and a workspace of its own (two 32 MiB
        # blocks never freed in every training history)
        a.malloc(CUBLAS_WORKSPACE)
    cache: list[int] = []
    kept: list[list[int]] = []
    copies: list[list[int]] = []
    for l in range(plan.layers):
        copies.append([a.malloc(p.autocast_copy) for part in ("attn", "mlp")
                       for _, p in reversed(halves[l][part]) if p.autocast_copy])
        if plan.grad_ckpt:
            kept.append([a.malloc(plan.layer_input)])
        else:
            attn = [a.malloc(b) for b in saved_attn]
            cache += [attn[j] for j in kv_at]
            kept.append(attn + [a.malloc(b) for b in saved_mlp])
        nxt = a.malloc(plan.hidden)
        a.free(hidden)
        hidden = nxt
    final = [a.malloc(b) for b in plan.final_norm]
    head_copies = [a.malloc(p.autocast_copy) for _, p in head if p.autocast_copy]
    cap = -1
    if plan.softcap:
        # Gemma 2's final_logit_softcapping: the head's output, / cap, tanh (kept for
        # backward), * cap (trace-full-gemma-2-2b-bf16-adamw-b4-s1024)
        raw = a.malloc(plan.softcap)
        div = a.malloc(plan.softcap)
        a.free(raw)
        cap = a.malloc(plan.softcap)
        a.free(div)
    logits = a.malloc(plan.logits)
    up = a.malloc(plan.logits_fp32) if plan.logits_fp32 else -1
    lsm = a.malloc(plan.log_softmax)
    a.free(up)
    # backward: nll -> log_softmax -> the upcast -> lm_head
    g1 = a.malloc(plan.log_softmax)
    g2 = a.malloc(plan.log_softmax)
    a.free(g1)
    a.free(lsm)
    if plan.logits_fp32:
        g3 = a.malloc(plan.logits)
        a.free(g2)
    else:
        g3 = g2
    if plan.softcap:
        # back through * cap, tanh and / cap: one logits-sized gradient each
        for i in range(3):
            nxt = a.malloc(plan.softcap)
            a.free(g3)
            if i == 1:
                a.free(cap)
            g3 = nxt
    # A tied output layer's gradient waits in autograd's input buffer for the embedding's,
    # which is added to it out of place (engine InputBuffer::accumulate): the two and
    # their sum, the sum kept (trace-full-gemma-2-2b-bf16-adamw8bit-b4-s1024-ckpt: three
    # embedding-sized blocks, the third freed at zero_grad).
    tied = plan.tied_embeddings and not plan.head
    pending: dict[object, int] = {}
    for i, p in head:
        if tied and p.grad:
            via = a.malloc(p.grad_via) if p.grad_via else -1
            pending[i] = a.malloc(p.grad)
            a.free(via)
        else:
            _grad(a, p, i, grads, accumulate)
    # the head's backward matmul: the weight's gradient, then the backward thread's own
    # cuBLAS workspace (its first matmul), then the input's gradient
    # (trace-full-llama-3.2-1b-bf16-paged-adamw8bit-b8-s1024)
    if first:
        a.malloc(CUBLAS_WORKSPACE)
    grad_hidden = a.malloc(plan.hidden)
    a.free(g3)
    for b in head_copies + final:
        a.free(b)
    n_attn = len(saved_attn)
    for l in reversed(range(plan.layers)):
        if plan.grad_ckpt:
            layer = [a.malloc(b) for b in saved_attn] + [a.malloc(b) for b in saved_mlp]
        else:
            layer = kept[l]
        # MLP half: grads of the product / gate / up, the weights' grads, the saved
        # tensors freed, the input's grad added into the residual stream's.
        t1 = a.malloc(plan.mlp_grad)
        for i, p in halves[l]["mlp"]:
            _grad(a, p, i, grads, accumulate)
        for b in layer[n_attn:]:
            a.free(b)
        t2 = a.malloc(plan.mlp_grad)
        a.free(t1)
        gx = a.malloc(plan.hidden)
        a.free(t2)
        nxt = a.malloc(plan.hidden)
        a.free(grad_hidden)
        a.free(gx)
        grad_hidden = nxt
        # attention half
        ta = a.malloc(plan.attn_grads[0]) if plan.attn_grads else -1
        tq = [a.malloc(b) for b in plan.attn_grads[1:]]
        a.free(ta)
        for i, p in halves[l]["attn"]:
            _grad(a, p, i, grads, accumulate)
        for j, b in enumerate(layer[:n_attn]):
            if plan.grad_ckpt or j not in kv_at:
                a.free(b)
        gx = a.malloc(plan.hidden)
        for b in tq:
            a.free(b)
        nxt = a.malloc(plan.hidden)
        a.free(grad_hidden)
        a.free(gx)
        grad_hidden = nxt
        if plan.grad_ckpt:
            a.free(kept[l][0])
        for b in copies[l]:
            a.free(b)
    a.free(hidden)
    for i, p in embed:
        if i in pending:
            mine = a.malloc(p.grad)
            total = a.malloc(p.grad)
            a.free(pending.pop(i))
            a.free(mine)
            if i in grads or accumulate:
                a.free(total)  # AccumulateGrad adds it into .grad in place
            else:
                grads[i] = total
        else:
            _grad(a, p, i, grads, accumulate)
    a.free(grad_hidden)
    for b in cache:
        a.free(b)
    a.free(logits)


@lru_cache(maxsize=4096)
def fragmentation(plan: StepPlan) -> int:
    """Peak reserved minus peak allocated of the replayed step, in bytes."""
    if plan.layers <= MAX_REPLAY_LAYERS:
        return replay(plan).fragmentation
    half = MAX_REPLAY_LAYERS // 2
    f1 = replay(_shallow(plan, half)).fragmentation
    f2 = replay(_shallow(plan, MAX_REPLAY_LAYERS)).fragmentation
    return max(0, int(f2 + (f2 - f1) / half * (plan.layers - MAX_REPLAY_LAYERS)))


def _shallow(plan: StepPlan, layers: int) -> StepPlan:
    runs, left = [], layers
    for kind, n in plan.layer_runs:
        if left > 0:
            runs.append((kind, min(n, left)))
            left -= n
    return replace(plan, layer_runs=tuple(runs))
