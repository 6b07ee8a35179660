"""How many input columns of each layer's MLP down projection take LLM.int8's outlier
path in a prefill (bitsandbytes MatMul8bitLt: a column goes to the 16-bit matmul when any
row of the input exceeds the threshold in it), for the weights the fit test makes.

The count matters for memory because that path holds fp32 copies of the weight's
columns: the allocator cuts new segments each time a layer needs a larger pair than any
before it (generate_replay.int8_linear). Given the per-layer counts of
trace-infer-llama-3.1-8b-int8-b1-p512-n32, the replay gives that run's peak reserved to
8 MiB; with every layer at all columns it was 1.6 GiB short.

The fit test's weights are normal(0, INIT_STD) (fittest/hf_build.py). After RMSNorm a
token's input has unit RMS, so gate and up of a hidden width H are each normal with
std INIT_STD x sqrt(H), and an element of the down projection's input silu(gate) x up
exceeds the threshold with a probability q computed here by quadrature. Over T tokens a
column is an outlier unless none of them exceeds it: 1 - (1 - q)^T, were the tokens
independent. They are not quite: the layers' inputs are correlated (at init, attention
averages the values), most of all in the first layers, so the tokens count as
rho(layer) x T independent ones, rho rising with depth (coefficients.py: RHO_PLAIN, and
RHO_QK_NORM for Qwen3's normed queries and keys, whose tokens stay far more alike). Each
column passes or not on its own, so a layer's count is binomial around that mean, and
the largest so far, the one the allocator has to make room for, grows with the layers as
the expected maximum of that many draws.

A trained model has far fewer outlier columns (Dettmers et al. 2022, LLM.int8(): a
handful of feature dimensions), so for a job with real weights this errs high; it is
what the fit test, and every measured LLM.int8 run, holds."""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

from cardfit.core.estimate import coefficients as K
from cardfit.core.fittest.hf_build import INIT_STD, INT8_THRESHOLD

_STEPS = 2000  # quadrature points over +-9 standard deviations of gate


@lru_cache(maxsize=256)
def exceed_probability(hidden: int) -> float:
    """P(|silu(g) u| > threshold) for independent g, u ~ N(0, (INIT_STD sqrt(hidden))^2):
    the integral over g of u's two-sided tail beyond threshold / |silu(g)|."""
    std = INIT_STD * math.sqrt(hidden)
    lim = 9 * std
    dg = 2 * lim / _STEPS
    total = 0.0
    for i in range(_STEPS):
        g = -lim + (i + 0.5) * dg
        s = abs(g / (1 + math.exp(-g)))
        if s > 0:
            tail = math.erfc(INT8_THRESHOLD / (s * std) / math.sqrt(2))
            total += math.exp(-0.5 * (g / std) ** 2) * tail
    return total * dg / (std * math.sqrt(2 * math.pi))


def effective_tokens(layer: int, qk_norm: bool = False) -> float:
    """rho: the fraction of a prefill's tokens that count as independent at ``layer``."""
    first, deep, scale, power = K.RHO_QK_NORM if qk_norm else K.RHO_PLAIN
    return deep - (deep - first) * (1 + layer / scale) ** -power


def mean_columns(layer: int, tokens: int, hidden: int, width: int, qk_norm: bool = False) -> float:
    q = exceed_probability(hidden)
    return width * -math.expm1(effective_tokens(layer, qk_norm) * tokens * math.log1p(-q))


@lru_cache(maxsize=256)
def outlier_columns(layers: int, tokens: int, hidden: int, width: int, qk_norm: bool = False) -> tuple[int, ...]:
    """Per layer, the most outlier columns any layer up to it has had (expected): the
    sizes the outlier path's blocks take, layer by layer."""
    out: list[int] = []
    most = 0
    for layer in range(layers):
        m = mean_columns(layer, tokens, hidden, width, qk_norm)
        sd = math.sqrt(max(0.0, m * (1 - m / width)))
        # Blom's approximation of the expected largest of n standard normal draws
        n = layer + 1
        z = NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n > 1 else 0.0
        most = max(most, min(width, round(m + sd * z)))
        out.append(most)
    return tuple(out)
