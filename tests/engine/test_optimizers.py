"""training.optimizer (pipelines/engine/optimizers.py): LAMB's update against the paper's Algorithm 2 written
out here, the parameter groups of LAMB and AdamW, the user errors, and a real engine run with LAMB."""

import io
import math

import pytest
import torch
from pytorch_optimizer import Lamb
from tiny_run import build_tiny_tokenizer, train_tiny

from pipelines.config import TrainingSection, load_recipe
from pipelines.engine.optimizers import build_optimizer
from pipelines.errors import LmforgeError

STEPS = 5


class Block(torch.nn.Module):
    """Decaying matrices (one starting at zero: ||w|| = 0) and never-decaying biases and norms."""

    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(6, 5)
        self.zero_init = torch.nn.Linear(5, 4, bias=False)
        torch.nn.init.zeros_(self.zero_init.weight)
        self.LayerNorm = torch.nn.LayerNorm(4)


def block() -> Block:
    torch.manual_seed(0)
    model = Block().double()  # float64: the deltas compared below are ~lr * ||w||, far above its rounding
    with torch.no_grad():
        model.LayerNorm.bias.normal_()  # non-zero, so the no-trust-ratio rule shows
    return model


def gradients(model, steps=STEPS) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [{n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in model.named_parameters()}
            for _ in range(steps)]


def reference_lamb(w, grads, t: TrainingSection, weight_decay: float, layer_adaptation: bool,
                   bias_correction: bool) -> torch.Tensor:
    """LAMB, Algorithm 2 of You et al. (2019), for one tensor; bias correction optional (the paper's v3 and
    ALBERT's code have none), layer adaptation off = an Adam step (ALBERT's biases and LayerNorms)."""
    b1, b2, eps, lr = t.adam_beta1, t.adam_beta2, t.adam_epsilon, t.learning_rate
    w, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    for step, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = (m / (1 - b1**step), v / (1 - b2**step)) if bias_correction else (m, v)
        r = m_hat / (v_hat.sqrt() + eps) + weight_decay * w
        w_norm, r_norm = w.norm(), r.norm()
        ratio = w_norm / r_norm if layer_adaptation and w_norm > 0 and r_norm > 0 else 1.0
        w = w - lr * ratio * r
    return w


def run_library(model, t: TrainingSection, grads, foreach) -> dict[str, torch.Tensor]:
    opt = build_optimizer(model, t)
    for group in opt.param_groups:
        group["foreach"] = foreach  # None: batched (torch._foreach_*) update; False: the per-tensor loop
    for g in grads:
        for n, p in model.named_parameters():
            p.grad = g[n].clone()
        opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("foreach", [None, False])
def test_lamb_from_the_recipe_follows_the_paper_algorithm(foreach):
    t = load_recipe("albert-base").training
    assert t.optimizer == "lamb" and t.learning_rate == 0.00176 and t.weight_decay > 0
    model = block()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = gradients(model)
    after = run_library(model, t, grads, foreach)
    assert after.keys() == {"dense.weight", "dense.bias", "zero_init.weight", "LayerNorm.weight", "LayerNorm.bias"}
    for name, w in after.items():
        decays = name.endswith("weight") and "LayerNorm" not in name
        wd = t.weight_decay if decays else 0.0
        steps = [g[name] for g in grads]
        expected = reference_lamb(start[name], steps, t, wd, layer_adaptation=decays, bias_correction=False)
        delta, want = w - start[name], expected - start[name]
        torch.testing.assert_close(delta, want, rtol=1e-6, atol=1e-12, msg=name)
        assert delta.norm() > 0.1 * t.learning_rate, name  # every tensor moved
        # the check can fail: with bias correction (NVIDIA's FusedLAMB) the decaying tensors and the
        # Adam-stepped ones move otherwise, and without the trust ratio the matrices do
        corrected = reference_lamb(start[name], steps, t, wd, layer_adaptation=decays, bias_correction=True)
        assert not torch.allclose(corrected - start[name], want, rtol=1e-4, atol=0), name
        if decays:
            plain = reference_lamb(start[name], steps, t, wd, layer_adaptation=False, bias_correction=False)
            assert not torch.allclose(plain - start[name], want, rtol=1e-2, atol=0), name
    # the trust ratio at work: each step of a decaying tensor is lr * ||w|| long (1: the zero-initialised
    # tensor's first step, then its own norm)
    model = block()
    w0 = model.dense.weight.detach().clone()
    run_library(model, t, grads[:1], foreach)
    moved = (model.dense.weight.detach() - w0).norm()
    assert moved.item() == pytest.approx(t.learning_rate * w0.norm().item(), rel=1e-6)


def test_training_optimizer_lamb_builds_lamb_over_the_no_decay_groups():
    t = load_recipe("bert-tiny", ["training.optimizer=lamb", "training.weight_decay=0.05"]).training
    from transformers import BertConfig, BertForPreTraining

    model = BertForPreTraining(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=32))
    opt = build_optimizer(model, t)
    assert isinstance(opt, Lamb)
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = ([names[id(p)] for p in g["params"]] for g in opt.param_groups)
    assert decay and all(n.endswith(".weight") and "LayerNorm" not in n for n in decay)
    assert any("LayerNorm" in n for n in no_decay) and any(n.endswith(".bias") for n in no_decay)
    assert len(decay) + len(no_decay) == len(names)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [g["adam"] for g in opt.param_groups] == [False, True]  # no trust ratio on biases and norms
    for g in opt.param_groups:
        assert (g["lr"], g["betas"], g["eps"]) == (t.learning_rate, (t.adam_beta1, t.adam_beta2), t.adam_epsilon)
        assert not g["weight_decouple"] and g["adam_debias"] and not g["rectify"]
    assert opt.clamp == math.inf
    # the state a checkpoint holds loads with weights_only and continues the same run
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.01)
    opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    twin = build_optimizer(model, t)
    twin.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert [g["step"] for g in twin.param_groups] == [1, 1]


def test_unknown_optimizer_is_one_line_naming_the_field():
    with pytest.raises(LmforgeError) as err:
        load_recipe("bert-tiny", ["training.optimizer=adam"])
    msg = str(err.value)
    assert "\n" not in msg and "training.optimizer" in msg and "'adam'" in msg and "adamw, lamb" in msg
    with pytest.raises(LmforgeError, match="training.optimizer: 'sgd' is not one of adamw, lamb"):
        build_optimizer(block(), TrainingSection(optimizer="sgd"))


@pytest.mark.parametrize("launch", ["DEEPSPEED", "FSDP"])
def test_lamb_refuses_launches_that_shard_the_tensors(launch):
    with pytest.raises(LmforgeError) as err:
        build_optimizer(block(), TrainingSection(optimizer="lamb"), distributed_type=launch)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("training.optimizer=lamb is not available under")
    assert "training.optimizer=adamw" in msg
    assert isinstance(build_optimizer(block(), TrainingSection(optimizer="adamw"), distributed_type=launch),
                      torch.optim.AdamW)


def test_adamw_is_unchanged():
    t = TrainingSection()
    assert t.optimizer == "adamw"
    model = block()
    opt = build_optimizer(model, t)
    assert type(opt) is torch.optim.AdamW
    names = {id(p): n for n, p in model.named_parameters()}
    assert [[names[id(p)] for p in g["params"]] for g in opt.param_groups] == [
        ["dense.weight", "zero_init.weight"], ["dense.bias", "LayerNorm.weight", "LayerNorm.bias"]]
    assert [g["weight_decay"] for g in opt.param_groups] == [t.weight_decay, 0.0]
    for g in opt.param_groups:
        assert (g["lr"], g["betas"], g["eps"]) == (t.learning_rate, (t.adam_beta1, t.adam_beta2), t.adam_epsilon)
        assert g["fused"] is True  # torch's fused kernel, on the CPU too
    # and the update is a plain fused AdamW's over those groups, to the bit
    twin = block()
    reference = torch.optim.AdamW([{"params": [twin.dense.weight, twin.zero_init.weight], "weight_decay": 0.01},
                                   {"params": [twin.dense.bias, *twin.LayerNorm.parameters()], "weight_decay": 0.0}],
                                  lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                                  fused=True)
    for g in gradients(model, 3):
        for m, o in ((model, opt), (twin, reference)):
            for n, p in m.named_parameters():
                p.grad = g[n].clone()
            o.step()
    for (n, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)


def test_a_short_engine_run_with_lamb_learns(tmp_path):
    tok = build_tiny_tokenizer(tmp_path / "tok")
    # LAMB's lr is a relative step (||dw|| = lr ||w||): 2e-2 here, as 1e-3 moves AdamW's tiny weights
    result = train_tiny(tmp_path / "run", tok, "training.optimizer=lamb", "training.learning_rate=2e-2",
                        "training.max_steps=12")
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
