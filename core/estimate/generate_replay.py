"""Replays Hugging Face ``generate()`` tensor by tensor through the caching-allocator model
(allocator.py): the peak memory torch reserves for an inference run, and how much of it
the tensors use at their peak.

The tensors and their order are those of transformers' Llama-style decoder
(models/llama/modeling_llama.py and its Mistral, Qwen2, Qwen3 copies) as the allocator
histories recorded on the H200 show them (tests/data/traces_h200/: tune-split and
trace-only runs, never a held-out one):

- build: the weights, in ``model.parameters()`` order; a tied output layer is built and
  dropped (its block stays cached); 4-bit weights come after the layers' 16-bit copies they
  are packed from, one at a time, and the embedding after them;
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
  for a single token (its gemv kernel); in a decode step of a few tokens some of them are
  not (Qwen3 1.7B at batch 8: q, o and one MLP weight are), which is not modelled: every
  one is, and the step's blocks are freed at once, so it moves little;
- the last position's logits (logits_to_keep=1), their fp32 copy and, where the config
  has an end-of-sequence token, min_new_tokens' two logits processors (generation/utils.py);
- each decode step: the same layer over batch tokens, but the cache grows by torch.cat:
  a new block one token longer for k and then v of every layer, the old one freed.

GPT-2 (models/gpt2/modeling_gpt2.py) has its own block: LayerNorm, the fused c_attn,
learned positions, gelu_new written out in eight ops (gpt2_layer); sdpa's math kernel
(fp32 with grouped-query attention) its own attention (math_attention).

Replaying the recorded histories themselves through the allocator model gives their
real peak reserved to 4 MiB; this synthetic replay gives the traced runs' peak reserved to
1 % (tests/test_estimate_generate_replay.py) and is checked against every measured run
in tests/test_estimate_accuracy.py. LLM.int8 (int8_linear) is replayed with as many outlier
columns per layer as the fit test's random weights send that way (int8_outliers.py). Other
architectures and eager attention keep the estimator's fitted reserve.
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
SUPPORTED_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})


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
    int8: bool = False  # LLM.int8 weights (bitsandbytes MatMul8bitLt per matmul)
    gpt2: bool = False  # GPT-2's block (LayerNorm, fused c_attn, gelu_new, learned positions)
    # A tied output layer is built (vocab x hidden) and then replaced by the embedding: its
    # block is freed but stays reserved (seen in every tied model's history).
    tied_transient: int = 0
    processors: bool = False  # generate() masks the end-of-sequence token (min_new_tokens)
    # Per weight, a block made just before it and freed just after (the 16-bit weight a
    # 4-bit or int8 one is made from); empty: none.
    transients: tuple[int, ...] = ()
    # LLM.int8: per layer, the down projection's input columns that take the outlier path
    # in the prefill (int8_outliers.outlier_columns); empty: every column.
    outliers: tuple[int, ...] = ()


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
        self.kept: dict[int, int] = {}  # generate()'s loop variables (pick)
        self.index = 0  # the layer being replayed

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

    def linear(self, tokens: int, n_in: int, n_out: int, outliers: bool = False) -> int:
        if self.p.int8:
            return self.int8_linear(tokens, n_in, n_out, outliers)
        deq = self.new(n_in * n_out * 2) if self.p.dequant and tokens > 1 else -1
        out = self.new(tokens * n_out * self.p.c)
        self.free(deq)
        return out

    def int8_linear(self, tokens: int, n_in: int, n_out: int, outliers: bool) -> int:
        """bitsandbytes MatMul8bitLt as trace-infer-llama-3.2-1b-int8-b8-p1024-n64 shows it:
        the input quantized to int8 (a 16-bit copy with the outlier columns zeroed, and its
        int8 rows), the int32 product, its 16-bit dequantization.

        Input columns above the outlier threshold (6.0) go through a 16-bit matmul of their
        own: the columns of the input, the weight's int8 columns, two fp32 copies of them
        scaled back, their 16-bit cast, and the product added to the output. In the H200
        histories only the MLP's down projection had any (its input is the gated product);
        how many is the plan's ``outliers`` for the layer (int8_outliers.py), every column
        where the plan has none. A layer needing more than any before it gets new
        segments for its fp32 pair: the reserve grows with the count's running maximum."""
        c = self.p.c
        a1 = self.new(tokens * n_in)
        a2 = self.new(tokens * n_in * c)
        a3 = self.new(tokens * n_in)
        self.free(a2)
        sub = w16 = -1
        cols = self.p.outliers[self.index] if outliers and self.p.outliers else n_in
        if outliers and cols:
            sub = self.new(tokens * cols * c)
            icols = self.new(cols * n_out)
            f1 = self.new(cols * n_out * 4)
            f2 = self.new(cols * n_out * 4)
            self.free(f1, icols)
            w16 = self.new(cols * n_out * c)
            self.free(f2)
        self.free(a3)
        o32 = self.new(tokens * n_out * 4)
        out = self.new(tokens * n_out * c)
        self.free(o32)
        if outliers and cols:
            summed = self.new(tokens * n_out * c)
            self.free(out)
            out = summed
        self.free(w16, a1, sub)
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

    def math_attention(self, tokens: int, total: int) -> int:
        """sdpa's math kernel (aten/src/ATen/native/transformers/attention.cpp,
        _scaled_dot_product_attention_math), fp32 with grouped-query attention, as
        trace-infer-llama-3.2-1b-fp32-b2-p2048-n64 shows it: a copy of q, the causal mask
        built as bool and then as float (prefill only), k and v expanded to every head,
        q and k each scaled, the scores, the masked scores with safe-softmax's bool of the
        same shape, the output, and its transpose made contiguous."""
        p, c = self.p, self.p.c
        rows = tokens // p.batch
        qc = self.new(tokens * p.q * c)
        mask = -1
        if rows > 1:
            b1, b2 = self.new(rows * total), self.new(rows * total)
            self.free(b1)
            mask = self.new(rows * total * c)
            self.free(b2)
        expanded = p.batch * p.heads * total * p.head_dim * c
        ek, ev = self.new(expanded), self.new(expanded)
        qs, ks = self.new(tokens * p.q * c), self.new(expanded)
        n = p.batch * p.heads * rows * total * c
        s1 = self.new(n)
        self.free(ks, qs)
        s2 = self.new(n)
        inf = self.new(n // c)
        self.free(inf, s1)
        o = self.new(tokens * p.q * c)
        self.free(ek, ev, qc, mask, s2)
        out = self.new(tokens * p.q * c)
        self.free(o)
        return out

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
        o = self.math_attention(tokens, total) if p.math_scores else self.new(tokens * p.q * c)
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
        # (a decode step's outliers are a few dozen columns, small-pool blocks: prefill only)
        down = self.linear(tokens, p.inter, h, outliers=tokens > p.batch)
        self.free(prod, n2)
        out = self.new(tokens * h * c)
        self.free(down, mid)
        return out

    def layer_norm(self, rows: int, width: int) -> int:
        """nn.LayerNorm (native_layer_norm): its output; the fp32 mean and rstd are freed at
        once in inference."""
        mean, rstd = self.new(rows * 4), self.new(rows * 4)
        out = self.new(rows * width * self.p.c)
        self.free(mean, rstd)
        return out

    def gpt2_layer(self, tokens: int, x: int, cache: list[int], past: int, first: bool = False) -> int:
        """GPT2Block (models/gpt2/modeling_gpt2.py) as the H200 histories show it
        (trace-infer-gpt2-fp16-b64-p512-n256): the attention's output and both residual sums
        live until the block returns; gelu_new (activations.NewGELUActivation) is eight
        elementwise ops, 0.5 * x first, so up to four MLP-wide blocks at once."""
        p, c, h = self.p, self.p.c, self.p.hidden
        n1 = self.layer_norm(tokens, h)
        qkv = self.linear(tokens, h, 3 * h)
        if first:
            self.new(CUBLAS_WORKSPACE)  # kept for the process's life
        total = past + tokens // p.batch
        for i in (0, 1):
            grown = self.cache_new(cache[i], p.batch * total * p.kv * c)
            self.free(cache[i])
            cache[i] = grown
        a = self.new(tokens * h * c)  # sdpa's output (GPT-2 has no grouped-query heads)
        proj = self.linear(tokens, h, h)
        self.free(a, qkv)
        r1 = self.new(tokens * h * c)
        self.free(n1)
        n2 = self.layer_norm(tokens, h)
        fc = self.linear(tokens, h, p.inter)
        width = tokens * p.inter * c
        half = self.new(width)  # 0.5 * x
        cube = self.new(width)  # x ** 3
        t = self.new(width)  # 0.044715 * x**3
        self.free(cube)
        for _ in range(4):  # x + ., sqrt(2/pi) * ., tanh(.), 1 + .
            u = self.new(width)
            self.free(t)
            t = u
        act = self.new(width)
        self.free(half, t, fc)
        down = self.linear(tokens, p.inter, h)
        self.free(act)
        out = self.new(tokens * h * c)
        self.free(n2, r1, proj, down)
        return out

    def forward(self, tokens: int, caches: list[list[int]], past: int, first: bool) -> None:
        if self.p.gpt2:
            return self.gpt2_forward(tokens, caches, past, first)
        p = self.p
        emb = self.new(tokens * p.hidden * p.c)
        cos, sin = self.rope_tables(tokens, first)
        x = emb
        for l in range(p.layers):
            self.index = l
            y = self.layer(tokens, x, caches[l], past)
            if x != emb:
                self.free(x)
            x = y
        normed = self.norm(tokens, p.hidden)
        self.free(x, emb, cos, sin)
        self.pick(normed)


    def gpt2_forward(self, tokens: int, caches: list[list[int]], past: int, first: bool) -> None:
        """GPT2Model: token and position embeddings (both kept to the end) and their sum;
        cuBLAS's workspace comes with the first matmul, after its output."""
        p = self.p
        size = tokens * p.hidden * p.c
        emb, pos = self.new(size), self.new(size)
        x = self.new(size)
        for l in range(p.layers):
            y = self.gpt2_layer(tokens, x, caches[l], past, first and l == 0)
            self.free(x)
            x = y
        normed = self.layer_norm(tokens, p.hidden)
        self.free(x, emb, pos)
        self.pick(normed)

    def pick(self, normed: int) -> None:
        """The last position's logits (logits_to_keep=1), then generation/utils.py's
        greedy loop: their fp32 copy (``.to(copy=True, dtype=float32)``, made even from
        fp32), then, where the config has an end-of-sequence token, two logits processors
        (the fit test's min_new_tokens) that each clone and mask the scores; argmax. The
        copy and the processed scores are loop variables: each lives until the next step
        makes its own."""
        p = self.p
        logits = self.new(p.batch * p.vocab * p.c)
        self.free(normed)
        n = p.batch * p.vocab * 4
        self.carry(0, self.new(n))
        if p.processors:
            first = -1
            for i in range(2):
                clone = self.new(n)
                masked = self.new(n)
                self.free(clone)
                if i == 0:
                    first = masked
            self.free(first)
            self.carry(1, masked)
        self.free(logits)

    def carry(self, key: int, bid: int) -> None:
        """Keeps ``bid`` as loop variable ``key`` and frees the block it held before."""
        self.free(self.kept.pop(key, -1))
        self.kept[key] = bid


class _Recorder(_Run):
    """Runs one decode step without an allocator and keeps its large-pool blocks as a list
    that the replay runs for every step: (0, slot, bytes) makes a block, (1, slot, 0) frees
    one, (2, layer, i) grows cache i (k, v) of a layer by torch.cat, (3, layer, i) frees
    the cache block it replaces and (4, key, slot) makes a block a loop variable of
    generate(), freeing the previous step's. Small-pool blocks never touch the large pool's
    holes, so they are left out. Only the cache's size is taken to change from step to step
    (the math kernel's per-step blocks are counted at one token of context: the prefill's,
    over the whole prompt, are what sets that case's peak)."""

    def __init__(self, plan: GeneratePlan) -> None:
        self.p = plan
        self.min_size = SMALL
        self.index = 0
        self.ops: list[tuple[int, int, int]] = []
        self.slots = 0
        self.kept = {}

    def carry(self, key: int, bid: int) -> None:
        self.ops.append((4, key, bid))  # frees the previous step's, keeps this one

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
    for w, t in zip(plan.weights, plan.transients or (0,) * len(plan.weights)):
        tb = a.malloc(t) if t else -1
        a.malloc(w)
        a.free(tb)
    if plan.tied_transient:
        a.free(a.malloc(plan.tied_transient))
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
    kept = {k: b for k, b in run.kept.items() if b >= 0}
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
            elif kind == 3:
                free(caches[x][y])
                caches[x][y] = grown.pop((x, y))
            else:
                old = kept.pop(x, -1)
                if old >= 0:
                    free(old)
                if y >= 0:
                    kept[x] = live.pop(y)
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
