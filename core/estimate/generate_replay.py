"""Replays Hugging Face ``generate()`` tensor by tensor through the caching-allocator model
(allocator.py): the peak memory torch reserves for an inference run, and how much of it
the tensors use at their peak.

The tensors and their order are those of transformers' Llama-style decoder
(models/llama/modeling_llama.py and its Mistral, Qwen2, Qwen3 copies) as the allocator
histories recorded on the H200 show them (tests/data/traces_h200/, tune-split runs only):

- build: the weights, in ``model.parameters()`` order;
- prefill over all batch x prompt tokens: the embeddings (kept to the end of the forward),
  the rotary tables (the first matmul also makes cuBLAS's 32 MiB workspace), then per layer
  RMSNorm in fp32 (LlamaRMSNorm: the fp32 copy, its square, the mean, rsqrt, the scaled
  copy, the cast back, the weight's product), q/k/v projections (Qwen3: each normed per
  head the same way), rotary embedding (q*cos, rotate_half's negated half and cat,
  *sin, the sum), the cache's copies of k and v (DynamicLayer.update: torch.cat onto an
  empty cache), the attention output, o_proj, the residual add, the second norm, and the
  gated MLP (gate, act(gate), up, the product, down), the next residual; a layer's input
  lives until the layer returns;
- bitsandbytes 4-bit weights are dequantized to 16 bit for each matmul (MatMul4Bit), except
  for a single token (its gemv kernel);
- the last position's logits (logits_to_keep=1) and their fp32 copy
  (generation/utils.py);
- each decode step: the same layer over batch tokens, but the cache grows by torch.cat:
  a new block one token longer for k and then v of every layer, the old one freed.

Replaying the recorded histories themselves through the allocator model gives their
real peak reserved to 2 MiB; this synthetic replay is checked against the measured runs
in tests/test_estimate_accuracy.py. Other architectures, eager attention and LLM.int8
(whose outlier columns depend on the data) keep the estimator's fitted reserve.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cardfit.core.estimate.allocator import SMALL, AllocatorModel

CUBLAS_WORKSPACE = 32 << 20  # CUBLAS_WORKSPACE_CONFIG ":4096:8" (CublasHandlePool.cpp)
# Large-pool blocks of the decode steps replayed one by one (about 0.1 s of Python); past
# this, the reserve's growth per step over the second half of the replayed steps is
# extended linearly (a 70B model's 80 layers x 4k tokens would be 2M blocks).
DECODE_BUDGET = 32_768
MIN_DECODE_STEPS = 8
# A decode whose cache grows by less than this fraction of the prefill's peak is replayed
# for MIN_DECODE_STEPS only: its peak is the prefill's. Chosen between two checks: the 78
# catalog models' batch-1 inference columns (3840 + 256 tokens; growth up to 2.6 %) give the
# full replay's figure to the byte from 8 steps; a batch-32 decode
# (infer-qwen3-0.6b-bf16-b32-p2048-n128, growth 4.6 %) needs every step.
SETTLED_GROWTH = 0.03
SUPPORTED_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


@dataclass(frozen=True)
class GeneratePlan:
    weights: tuple[int, ...]  # bytes of each parameter as stored, in build order
    layers: int
    hidden: int
    q: int  # query width (heads x head_dim)
    kv: int  # key width (kv heads x head_dim); values the same
    head_dim: int
    heads: int
    inter: int
    vocab: int
    c: int  # bytes of the compute dtype
    batch: int
    prompt: int
    new: int
    qk_norm: bool = False
    dequant: bool = False  # 4-bit weights, dequantized per matmul
    math_scores: bool = False  # sdpa's math kernel: fp32 scores and their softmax


@dataclass(frozen=True)
class GenerateReplay:
    peak_reserved: int
    peak_allocated: int


class _Run:
    """One replay: the allocator, and the plan's shapes at hand."""

    def __init__(self, plan: GeneratePlan) -> None:
        self.a = AllocatorModel()
        self.p = plan
        self.min_size = 0  # blocks up to this size are left out (the decode recorder's SMALL)

    def new(self, n: int) -> int:
        return self.a.malloc(n) if n > self.min_size else -1

    def cache_new(self, standin: int, n: int) -> int:
        return self.a.malloc(n)

    def free(self, *bids: int) -> None:
        for b in bids:
            self.a.free(b)

    def norm(self, rows: int, width: int) -> int:
        """LlamaRMSNorm over ``rows`` vectors of ``width``: returns the normed tensor."""
        c = self.p.c
        x32 = self.new(rows * width * 4) if c != 4 else -1
        sq = self.new(rows * width * 4)
        mean = self.new(rows * 4)
        self.free(sq)
        eps = self.new(rows * 4)
        rs = self.new(rows * 4)
        self.free(eps)
        y32 = self.new(rows * width * 4)
        self.free(rs, x32)
        yb = self.new(rows * width * c) if c != 4 else -1
        out = self.new(rows * width * c)
        self.free(yb, y32, mean)
        return out

    def linear(self, tokens: int, n_in: int, n_out: int) -> int:
        deq = self.new(n_in * n_out * 2) if self.p.dequant and tokens > 1 else -1
        out = self.new(tokens * n_out * self.p.c)
        self.free(deq)
        return out

    def rotary(self, tokens: int, width: int) -> int:
        c = self.p.c
        xc = self.new(tokens * width * c)
        half = self.new(tokens * width // 2 * c)
        cat = self.new(tokens * width * c)
        self.free(half)
        xs = self.new(tokens * width * c)
        self.free(cat)
        xe = self.new(tokens * width * c)
        self.free(xc, xs)
        return xe

    def rope_tables(self, tokens: int, first: bool) -> tuple[int, ...]:
        hd, c = self.p.head_dim, self.p.c
        pos = self.new(tokens * 4)
        freqs = self.new(tokens * hd // 2 * 4)
        if first:
            self.new(CUBLAS_WORKSPACE)  # kept for the process's life
        emb = self.new(tokens * hd * 4)
        c1 = self.new(tokens * hd * 4)
        c2 = self.new(tokens * hd * 4)
        self.free(c1)
        s1 = self.new(tokens * hd * 4)
        s2 = self.new(tokens * hd * 4)
        self.free(s1)
        if c == 4:
            self.free(pos, freqs, emb)
            return c2, s2
        cos = self.new(tokens * hd * c)
        sin = self.new(tokens * hd * c)
        self.free(pos, freqs, emb, c2, s2)
        return cos, sin

    def layer(self, tokens: int, x: int, cache: list[int], past: int) -> int:
        p, c = self.p, self.p.c
        h = p.hidden
        n = self.norm(tokens, h)
        if p.qk_norm:
            q0 = self.linear(tokens, h, p.q)
            q = self.norm(tokens * p.heads, p.head_dim)  # Qwen3's q_norm, per head
            self.free(q0)
            k0 = self.linear(tokens, h, p.kv)
            k = self.norm(tokens * (p.kv // p.head_dim), p.head_dim)
            self.free(k0)
        else:
            q = self.linear(tokens, h, p.q)
            k = self.linear(tokens, h, p.kv)
        v = self.linear(tokens, h, p.kv)
        qe = self.rotary(tokens, p.q)
        ke = self.rotary(tokens, p.kv)
        self.free(q, k)
        total = past + tokens // p.batch
        for i in (0, 1):  # DynamicLayer.update: torch.cat onto the cache, k then v
            grown = self.cache_new(cache[i], p.batch * total * p.kv * c)
            self.free(cache[i])
            cache[i] = grown
        self.free(ke, v)
        scores = ()
        if p.math_scores:
            s = p.batch * p.heads * (tokens // p.batch) * total * 4
            scores = (self.new(s), self.new(s))
        o = self.new(tokens * p.q * c)
        self.free(*scores)
        proj = self.linear(tokens, p.q, h)
        self.free(o, qe, n)
        mid = self.new(tokens * h * c)
        self.free(proj)
        n2 = self.norm(tokens, h)
        gate = self.linear(tokens, h, p.inter)
        act = self.new(tokens * p.inter * c)
        self.free(gate)
        up = self.linear(tokens, h, p.inter)
        prod = self.new(tokens * p.inter * c)
        self.free(act, up)
        down = self.linear(tokens, p.inter, h)
        self.free(prod, n2)
        out = self.new(tokens * h * c)
        self.free(down, mid)
        return out

    def forward(self, tokens: int, caches: list[list[int]], past: int, first: bool) -> None:
        p = self.p
        emb = self.new(tokens * p.hidden * p.c)
        cos, sin = self.rope_tables(tokens, first)
        x = emb
        for l in range(p.layers):
            y = self.layer(tokens, x, caches[l], past)
            if x != emb:
                self.free(x)
            x = y
        normed = self.norm(tokens, p.hidden)
        self.free(x, emb, cos, sin)
        logits = self.new(p.batch * p.vocab * p.c)
        self.free(normed)
        scores = self.new(p.batch * p.vocab * 4) if p.c != 4 else -1
        self.free(logits, scores)


class _Recorder(_Run):
    """Runs one decode step without an allocator and keeps its large-pool blocks as a list
    that the replay runs for every step: (0, slot, bytes) makes a block, (1, slot, 0) frees
    one, (2, layer, i) grows cache i (k, v) of a layer by torch.cat and (3, layer, i) frees
    the cache block it replaces. Small-pool blocks never touch the large pool's holes, so
    they are left out. Only the cache's size is taken to change from step to step (the
    math kernel's per-step scores, batch x heads x context x 4 B, are counted at one token
    of context: the prefill's, over the whole prompt, are what sets that case's peak)."""

    def __init__(self, plan: GeneratePlan) -> None:
        self.p = plan
        self.min_size = SMALL
        self.ops: list[tuple[int, int, int]] = []
        self.slots = 0

    def new(self, n: int) -> int:
        if n <= self.min_size:
            return -1
        self.slots += 1
        self.ops.append((0, self.slots, n))
        return self.slots

    def cache_new(self, standin: int, n: int) -> int:
        self.ops.append((2, *_standin_cache(standin)))
        return -1

    def free(self, *bids: int) -> None:
        for b in bids:
            if b >= 0:
                self.ops.append((1, b, 0))
            elif b <= -2:
                self.ops.append((3, *_standin_cache(b)))


def _standin_cache(b: int) -> tuple[int, int]:
    return divmod(-b - 2, 2)


def replay(plan: GeneratePlan, steps: int | None = None) -> AllocatorModel:
    return _replay(plan, plan.new - 1 if steps is None else steps)[0]


def _replay(plan: GeneratePlan, steps: int | None) -> tuple[AllocatorModel, int, int, int]:
    """The allocator after prefill and ``steps`` decode steps (None: as many as needed,
    see SETTLED_GROWTH and DECODE_BUDGET), the steps replayed, the peak reserved at half of
    them, and the most the tensors held during the last step."""
    run = _Run(plan)
    a = run.a
    for w in plan.weights:
        a.malloc(w)
    caches = [[-1, -1] for _ in range(plan.layers)]
    run.min_size = SMALL  # the prefill's small-pool temporaries never touch the large pool
    run.forward(plan.batch * plan.prompt, caches, 0, True)
    rec = _Recorder(plan)
    rec.forward(plan.batch, [[-2 - 2 * l, -3 - 2 * l] for l in range(plan.layers)], 0, False)
    row = plan.batch * plan.kv * plan.c  # one token of one layer's k (or v)
    if steps is None:
        decode = plan.new - 1
        if 2 * plan.layers * row * decode <= SETTLED_GROWTH * a.peak_allocated:
            steps = min(decode, MIN_DECODE_STEPS)
        else:
            steps = min(decode, max(MIN_DECODE_STEPS, DECODE_BUDGET // max(1, len(rec.ops))))
    live: dict[int, int] = {}
    grown: dict[tuple[int, int], int] = {}
    malloc, free = a.malloc, a.free
    half_peak = a.peak_reserved
    last = a.allocated
    for step in range(steps):
        if step == steps // 2:
            half_peak = a.peak_reserved
        final = step == steps - 1
        size = row * (plan.prompt + step + 1)
        for kind, x, y in rec.ops:
            if kind == 0:
                live[x] = malloc(y)
                if final:
                    last = max(last, a.allocated)
            elif kind == 1:
                free(live.pop(x))
            elif kind == 2:
                grown[x, y] = malloc(size)
                if final:
                    last = max(last, a.allocated)
            else:
                free(caches[x][y])
                caches[x][y] = grown.pop((x, y))
    return a, steps, half_peak, last


@lru_cache(maxsize=1024)
def generate_reserve(plan: GeneratePlan) -> GenerateReplay:
    decode = plan.new - 1
    a, steps, half_peak, last = _replay(plan, None)
    if steps == decode:
        return GenerateReplay(a.peak_reserved, a.peak_allocated)
    # Each further step adds a known amount of cache: the last step's tensors grow by it.
    # Reserved keeps the trend of the replayed second half, and never less than that need.
    grow = 2 * plan.layers * plan.batch * plan.kv * plan.c
    more = decode - steps
    per_step = (a.peak_reserved - half_peak) / max(1, steps - steps // 2)
    allocated = max(a.peak_allocated, last + grow * more)
    return GenerateReplay(int(max(a.peak_reserved + per_step * more, allocated)), int(allocated))
