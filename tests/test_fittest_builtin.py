"""The built-in decoder of the fit test (core/fittest/builtin_model.py), in process on the
CPU: it allocates what Hugging Face's class allocates (parameter counts equal to
transformers' and to the model spec's), trains and generates, and its LoRA adds what the
estimator counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cardfit.core.estimate.estimator import lora_params  # noqa: E402
from cardfit.core.estimate.workload import Workload  # noqa: E402
from cardfit.core.fittest import builtin_model as bm  # noqa: E402
from cardfit.core.specs.hf_config import spec_from_config  # noqa: E402

FITTEST = Path(bm.__file__).parent

BASE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512}
CONFIGS = {
    "llama": {"model_type": "llama", **BASE, "tie_word_embeddings": False},
    "qwen2-tied": {"model_type": "qwen2", **BASE, "tie_word_embeddings": True},
    "mistral": {"model_type": "mistral", **BASE, "num_key_value_heads": 1},
    "gemma": {"model_type": "gemma", **BASE, "num_key_value_heads": 1, "head_dim": 32},
    "mixtral": {"model_type": "mixtral", **BASE, "intermediate_size": 96, "num_local_experts": 4,
                "num_experts_per_tok": 2},
    "qwen2_moe": {"model_type": "qwen2_moe", **BASE, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2},
}


def build(cfg, **w):
    model, notes = bm.build_builtin(torch, cfg, {"dtype": "fp32", **w}, "cpu")
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_parameters_as_the_spec_and_transformers(name):
    cfg = CONFIGS[name]
    model = build(cfg)
    spec = spec_from_config(cfg, source="test")
    assert n_params(model) == spec.param_counts().total
    transformers = pytest.importorskip("transformers")
    from cardfit.core.fittest.hf_build import hf_config

    hf = transformers.AutoModelForCausalLM.from_config(hf_config(cfg, "sdpa"))
    assert n_params(model) == n_params(hf)
    assert {n for n, _ in model.named_parameters() if "layers.0.self_attn" in n} == \
        {n for n, _ in hf.named_parameters() if "layers.0.self_attn" in n}


@pytest.mark.parametrize("name", ["llama", "mixtral", "qwen2_moe"])
def test_trains_and_generates(name):
    model = build(CONFIGS[name])
    ids = torch.randint(0, 256, (2, 12))
    out = model(input_ids=ids, labels=ids)
    assert out.loss.dtype == torch.float32 and out.logits.shape == (2, 12, 256)
    out.loss.backward()
    # every weight gets a gradient (an expert only when the router picked it)
    assert all(p.grad is not None for n, p in model.named_parameters() if ".experts." not in n)
    model.eval()
    with torch.inference_mode():
        g = model.generate(input_ids=ids[:, :5], attention_mask=torch.ones_like(ids[:, :5]),
                           max_new_tokens=4, min_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
        assert g.shape == (2, 9) and torch.equal(g[:, :5], ids[:, :5])
        assert torch.equal(g, model.generate(input_ids=ids[:, :5], max_new_tokens=4, use_cache=False))


def test_loss_upcasts_logits_like_hf():
    model, _ = bm.build_builtin(torch, CONFIGS["llama"], {"dtype": "bf16"}, "cpu")
    ids = torch.randint(0, 256, (1, 8))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    ref = torch.nn.functional.cross_entropy(out.logits[0, :-1].float(), ids[0, 1:])
    assert torch.allclose(out.loss, ref)


def test_eager_attention_and_checkpointing_agree_with_sdpa():
    torch.manual_seed(0)
    a = build(CONFIGS["llama"], attn="eager")
    b = build(CONFIGS["llama"], attn="sdpa")
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 256, (2, 10))
    assert torch.allclose(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-5)
    b.gradient_checkpointing = True
    b.train()
    la, lb = a(input_ids=ids, labels=ids).loss, b(input_ids=ids, labels=ids).loss
    la.backward()
    lb.backward()
    ga = a.model.layers[0].self_attn.q_proj.weight.grad
    gb = b.model.layers[0].self_attn.q_proj.weight.grad
    assert torch.allclose(ga, gb, atol=1e-5)


@pytest.mark.parametrize("targets", ["qv", "qkvo", "all"])
def test_lora_adds_what_the_estimator_counts(targets):
    cfg = CONFIGS["llama"]
    model = build(cfg)
    added = bm.add_lora(torch, model, 8, targets)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    spec = spec_from_config(cfg, source="test")
    assert added == trainable == lora_params(spec, Workload(task="lora", lora_r=8, lora_targets=targets))
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    assert "lora_A" in dict(model.named_modules())["model.layers.0.self_attn.q_proj"]._modules


def test_lora_output_keeps_the_base_dtype_and_starts_at_the_base():
    model, _ = bm.build_builtin(torch, CONFIGS["llama"], {"dtype": "bf16"}, "cpu")
    ids = torch.randint(0, 256, (1, 6))
    before = model(input_ids=ids).logits
    bm.add_lora(torch, model, 4, "qv")
    after = model(input_ids=ids).logits
    assert after.dtype == torch.bfloat16 and torch.equal(before, after)  # B starts at zero


def test_lion_steps_by_the_sign():
    p = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
    opt = bm.Lion([p], lr=0.1)
    p.grad = torch.tensor([2.0, -3.0, 0.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -0.9, 0.5]))
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor([0.02, -0.03, 0.0]))


def test_bad_configs_and_dtypes():
    with pytest.raises(ValueError, match="hidden_size"):
        bm.Arch({"model_type": "llama", **BASE, "hidden_size": 0})
    with pytest.raises(ValueError, match="do not divide"):
        bm.Arch({"model_type": "llama", **BASE, "num_key_value_heads": 3})
    with pytest.raises(ValueError, match="gptq"):
        bm.build_builtin(torch, CONFIGS["llama"], {"dtype": "gptq"}, "cpu")


@pytest.mark.parametrize("task, optim", [("infer", "adamw"), ("full", "sgd"), ("full", "lion"),
                                         ("lora", "adamw"), ("full", "adafactor")])
def test_workload_step_with_the_builtin_builder(task, optim, monkeypatch):
    monkeypatch.syspath_prepend(str(FITTEST))  # as child.py does
    monkeypatch.delitem(sys.modules, "workload_step", raising=False)
    import workload_step

    w = Workload(task=task, dtype="fp32", optim=optim, batch=2, seq=16, prompt=8, new=2, lora_r=4,
                 grad_ckpt=task == "full").to_json()
    spec = json.loads(json.dumps({"config": CONFIGS["llama"], "workload": w, "builder": "builtin"}))
    job = workload_step.build_and_prepare(spec, torch, "cpu")
    marks = []
    job.step(marks.append)
    assert job.builder == "builtin"
    assert marks == (["generate"] if task == "infer" else ["forward", "backward", "optimizer"])
    assert (job.trainable > 0) == (task != "infer")
