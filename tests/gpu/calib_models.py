"""Architecture fields of the models measured on the GPU, copied from each model's
published config.json (the URL is the source). The measured records embed these dicts,
so the accuracy test rebuilds every spec from exactly what ran."""

LLAMA3_ROPE = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
               "original_max_position_embeddings": 8192, "rope_type": "llama3"}

MODELS = {
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json
    "meta-llama/Llama-3.2-1B": dict(
        model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
        max_position_embeddings=131072, tie_word_embeddings=True, rope_theta=500000.0,
        rope_scaling=LLAMA3_ROPE, rms_norm_eps=1e-5, hidden_act="silu", torch_dtype="bfloat16"),
    # https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
    "meta-llama/Llama-3.1-8B": dict(
        model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
        max_position_embeddings=131072, tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling=dict(LLAMA3_ROPE, factor=8.0), rms_norm_eps=1e-5, hidden_act="silu",
        torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json
    "Qwen/Qwen2.5-0.5B": dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0,
        rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=32768, torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json
    "Qwen/Qwen2.5-1.5B": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=131072, tie_word_embeddings=True, rope_theta=1000000.0,
        rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=131072, torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json
    "Qwen/Qwen2.5-7B": dict(
        model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
        max_position_embeddings=131072, tie_word_embeddings=False, rope_theta=1000000.0,
        rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=131072, torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json
    "Qwen/Qwen3-1.7B": dict(
        model_type="qwen3", hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        max_position_embeddings=40960, tie_word_embeddings=True, rope_theta=1000000.0,
        rms_norm_eps=1e-6, torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json
    "Qwen/Qwen3-8B": dict(
        model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        max_position_embeddings=40960, tie_word_embeddings=False, rope_theta=1000000.0,
        rms_norm_eps=1e-6, torch_dtype="bfloat16"),
    # https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json
    "mistralai/Mistral-7B-v0.3": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=32768,
        max_position_embeddings=32768, tie_word_embeddings=False, rope_theta=1000000.0,
        rms_norm_eps=1e-5, sliding_window=None, torch_dtype="bfloat16"),
    # https://huggingface.co/google/gemma-2-2b/blob/main/config.json
    "google/gemma-2-2b": dict(
        model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000,
        max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=10000.0,
        sliding_window=4096, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
        torch_dtype="float32"),
    # https://huggingface.co/google/gemma-2-9b/blob/main/config.json
    "google/gemma-2-9b": dict(
        model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, vocab_size=256000,
        max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=10000.0,
        sliding_window=4096, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
        torch_dtype="float32"),
    # https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/blob/main/config.json
    "microsoft/Phi-3-mini-4k-instruct": dict(
        model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
        max_position_embeddings=4096, original_max_position_embeddings=4096,
        tie_word_embeddings=False, rope_theta=10000.0, sliding_window=2047, rms_norm_eps=1e-5,
        torch_dtype="bfloat16"),
    # https://huggingface.co/openai-community/gpt2/blob/main/config.json
    "openai-community/gpt2": dict(
        model_type="gpt2", n_embd=768, n_layer=12, n_head=12, n_positions=1024, n_ctx=1024,
        vocab_size=50257, torch_dtype="float32"),
    # https://huggingface.co/openai-community/gpt2-large/blob/main/config.json
    "openai-community/gpt2-large": dict(
        model_type="gpt2", n_embd=1280, n_layer=36, n_head=20, n_positions=1024, n_ctx=1024,
        vocab_size=50257, torch_dtype="float32"),
    # https://huggingface.co/allenai/OLMoE-1B-7B-0924/blob/main/config.json
    "allenai/OLMoE-1B-7B-0924": dict(
        model_type="olmoe", hidden_size=2048, intermediate_size=1024, num_hidden_layers=16,
        num_attention_heads=16, num_key_value_heads=16, num_experts=64, num_experts_per_tok=8,
        vocab_size=50304, max_position_embeddings=4096, tie_word_embeddings=False,
        rope_theta=10000.0, rms_norm_eps=1e-5, torch_dtype="bfloat16"),
    # https://huggingface.co/Qwen/Qwen1.5-MoE-A2.7B/blob/main/config.json
    "Qwen/Qwen1.5-MoE-A2.7B": dict(
        model_type="qwen2_moe", hidden_size=2048, intermediate_size=5632, moe_intermediate_size=1408,
        shared_expert_intermediate_size=5632, num_experts=60, num_experts_per_tok=4,
        num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16, vocab_size=151936,
        max_position_embeddings=8192, tie_word_embeddings=False, rope_theta=1000000.0,
        rms_norm_eps=1e-6, decoder_sparse_step=1, torch_dtype="bfloat16"),
    # https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B/blob/main/config.json
    "HuggingFaceTB/SmolLM2-1.7B": dict(
        model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
        num_attention_heads=32, num_key_value_heads=32, vocab_size=49152,
        max_position_embeddings=8192, tie_word_embeddings=True, rope_theta=130000.0,
        rms_norm_eps=1e-5, torch_dtype="bfloat16"),
}
