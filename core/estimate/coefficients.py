"""The estimator's measured coefficients. Each is global (the same for every model and
workload; no per-model fudge), named for what it stands for, and says which runs it was
read from. Runs: NVIDIA H100 80GB HBM3, driver 580.159.04, torch 2.11.0+cu130,
transformers 5.17.0, peft 0.21.0, bitsandbytes 0.50.2, one fresh process per case
(tests/data/gpu_measure_h100_*.jsonl, "tune" split only; the "holdout" split is never
used to set these)."""

from cardfit.core.units import MiB

# NVML device used minus torch.cuda.memory_reserved(): the CUDA context, loaded kernels
# and library handles ("nontorch_bytes" of each record). 701 MiB in every inference run,
# 767 MiB in every training run (backward kernels load more modules); bitsandbytes' int8
# kernels add 62 MiB; GaLore's SVD (cuSOLVER) adds 98 MiB.
CUDA_CONTEXT_INFER = 701 * MiB
CUDA_CONTEXT_TRAIN = 767 * MiB
CUDA_CONTEXT_INT8_EXTRA = 62 * MiB
CUDA_CONTEXT_SOLVER_EXTRA = 98 * MiB

# cuBLAS workspace, allocated through torch's caching allocator on first matmul:
# CUBLAS_WORKSPACE_CONFIG default ":4096:8" on Hopper (aten/src/ATen/cuda/CublasHandlePool.cpp).
CUBLAS_WORKSPACE = 32 * MiB

# Prefill working set per prompt token, in units of the compute dtype: PREFILL_INTER x the
# MLP width + PREFILL_HIDDEN x hidden. From infer-llama-3.1-8b-bf16-b1-p512-n64 and
# infer-llama-3.1-8b-nf4-b4-p2048-n64 (max_allocated of the generate mark minus weights,
# KV cache and cuBLAS workspace): 2 x 14336 + 5 x 4096 elements per token.
PREFILL_INTER = 2
PREFILL_HIDDEN = 5
# Routed experts gather, scatter and weight each token's expert outputs: their working set
# per routed token is this many times a dense MLP's of the same width
# (infer-olmoe-1b-7b-0924-bf16-b4-p2048-n64).
MOE_PREFILL_FACTOR = 3.75

# Scale on the derived training activations (1.0 = the tensor-by-tensor count is used as is).
TRAIN_ACT_FACTOR = 1.0

# Allocator reserve (torch reserved minus allocated at the peak). A full fine-tune's is
# not fitted: its training step is replayed through a model of the caching allocator
# (step_replay.py, allocator.py). These coefficients cover the rest, least squares over the
# tune split of tests/data/gpu_measure_h100_part*.jsonl (tools/check_estimates.py prints the
# per-case gaps). Llama-style and GPT-2 inference is replayed too (generate_replay.py, LLM.int8
# included); these cover the other decoders (their LLM.int8 too) and eager attention.
# Inference: the KV cache grows by torch.cat each token (DynamicCache), leaving freed blocks
# of every size; eager attention's score tensors are the largest blocks of all; LLM.int8's
# outlier path holds fp32 copies of the largest weight's columns (10 B per element: two
# fp32 copies and a 16-bit one of every column, the most that path holds).
RESERVE_KV = 0.36
RESERVE_PREFILL = 0.08
RESERVE_EAGER_SCORES = 0.57
RESERVE_INT8_PER_WEIGHT = 10  # bytes per element of the largest int8 weight
# LLM.int8 in the fit test (int8_outliers.py): the fraction of a prefill's tokens that
# count as independent when bitsandbytes looks for outlier columns, rising with depth as
# rho(layer) = deep - (deep - first) x (1 + layer / scale) ^ -power. Least squares (in
# binomial standard deviations) over the per-layer counts of the down projection's outlier
# columns in the H200 histories (tests/test_estimate_int8_outliers.py re-reads them):
# Llama and Mistral, 96 layers of trace-infer-llama-3.1-8b-int8-b1-p512-n32,
# trace-infer-llama-3.2-1b-int8-b1-p1024-n32, trace-infer-llama-3.2-1b-int8-b8-p1024-n64 and
# trace-infer-mistral-7b-v0.3-int8-b1-p1024-n32; with Qwen3's per-head q/k norms the tokens
# stay far more alike, 36 layers of trace-infer-qwen3-8b-int8-b1-p2048-n32. (first, deep,
# scale, power)
RHO_PLAIN = (0.646, 0.929, 0.128, 0.564)
RHO_QK_NORM = (0.234, 0.702, 0.895, 0.534)
# LoRA / QLoRA on one GPU: what the forward's fp32 temporaries leave behind, per layer a
# hole about a hidden state's fp32 size (layers x tokens x hidden x 4 B), or under gradient
# checkpointing the recomputed layer's MLP temporaries (tokens x MLP width x 4 B). Least
# squares over the 20 tune-split adapter runs of rounds 1-4 (held out: median 1.5 %, worst
# -2.9 %; tools/check_estimates.py --grep lora).
RESERVE_ADAPTER_LAYER_HIDDEN = 1.18
RESERVE_ADAPTER_RECOMPUTE = 3.75
# ZeRO / FSDP and offload (not measured), the terms the round-1 adapter fit used: the fp32
# logits and their grads are the largest blocks, the activations the most numerous;
# foreach AdamW's step temporaries are parameter-sized.
RESERVE_LOGITS = 0.16
RESERVE_ACTIVATIONS = 0.015
RESERVE_FOREACH = 0.04

# torch.optim.Adafactor's factored second moments, as a fraction of the parameter bytes
# (full-llama-3.2-1b-bf16-adafactor-b4-s1024: 65 MiB for 2357 MiB of weights).
ADAFACTOR_STATE_FRACTION = 0.03

# Host RAM of the fit-test child with torch and transformers imported and CUDA up, before
# weights are loaded (peak "rss" of the measured runs: 1.55-1.9 GiB).
RUNTIME_RSS = 1800 * MiB
# huggingface_hub / transformers save_pretrained default max_shard_size (5GB).
HUB_SHARD_BYTES = 5 * 1000**3

# NCCL communicator buffers per GPU. Not measured here (no multi-GPU machine was lent):
# NCCL's default buffer size (4 MiB) x channels x peers, rounded up generously.
NCCL_BUFFERS = 512 * MiB

# Model types whose layer layout the activation model was checked against.
MEASURED_FAMILIES = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "gpt2", "olmoe", "qwen2_moe"}
