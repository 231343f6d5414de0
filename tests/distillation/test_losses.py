"""The distillation losses against values computed by hand, the layer mapping and the head grouping."""

import math

import pytest
import torch

from pipelines.errors import LmforgeError
from tasks.distillation.losses import cosine_sum, group_heads, layer_map, soft_ce_sum, soft_kl_sum, squared_error_sum


def test_soft_kl_at_t1_and_t2():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p_t = (3/4, 1/4); p_s = (1/2, 1/2)
    at_1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_kl_sum(student, teacher, 1.0).item() == pytest.approx(at_1, rel=1e-6)
    # T = 2: p_t = softmax(ln3 / 2, 0) = (sqrt3, 1) / (sqrt3 + 1); times T^2 = 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    at_2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert soft_kl_sum(student, teacher, 2.0).item() == pytest.approx(at_2, rel=1e-6)


def test_soft_kl_sums_rows_and_is_zero_when_equal():
    z = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.3, 4.0]])
    assert soft_kl_sum(z, z, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    one = soft_kl_sum(z[:1], torch.zeros(1, 3), 1.0) + soft_kl_sum(z[1:], torch.zeros(1, 3), 1.0)
    assert soft_kl_sum(z, torch.zeros(2, 3), 1.0).item() == pytest.approx(one.item(), rel=1e-6)


def test_soft_ce_is_the_cross_entropy_of_the_teacher_distribution():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert soft_ce_sum(student, teacher).item() == pytest.approx(math.log(2.0), rel=1e-6)  # -(3/4 + 1/4) ln 1/2


def test_cosine_and_squared_error():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert cosine_sum(s, t).item() == pytest.approx((1 - 1 / math.sqrt(2)) + 2.0, rel=1e-6)
    assert squared_error_sum(s, t).item() == pytest.approx(0 + 1 + 0 + 9, rel=1e-6)


@pytest.mark.parametrize("m, n, expected", [(1, 6, [6]), (2, 4, [2, 4]), (3, 6, [2, 4, 6]), (4, 12, [3, 6, 9, 12]),
                                            (4, 6, [1, 3, 4, 6]), (6, 6, [1, 2, 3, 4, 5, 6])])
def test_layer_map(m, n, expected):
    assert layer_map(m, n) == expected


def test_layer_map_refuses_a_deeper_student():
    with pytest.raises(LmforgeError, match="7 layers and the teacher 6"):
        layer_map(7, 6)


def test_group_heads_averages_consecutive_teacher_heads():
    scores = torch.arange(1.0, 5.0).view(1, 4, 1, 1)  # heads 1, 2, 3, 4
    assert group_heads(scores, 2).flatten().tolist() == [1.5, 3.5]
    assert group_heads(scores, 4) is scores
    with pytest.raises(LmforgeError, match="multiple"):
        group_heads(scores, 3)


def test_teacher_embeddings_copied_or_projected_on_principal_components():
    from torch import nn

    from tasks.distillation.teacher import init_word_embeddings

    class Emb(nn.Module):
        def __init__(self, weight):
            super().__init__()
            self.emb = nn.Embedding(*weight.shape, _weight=weight.clone())

        def get_input_embeddings(self):
            return self.emb

    torch.manual_seed(0)
    table = torch.randn(50, 2) @ torch.randn(2, 6) + 3.0  # rank 2 around an offset, in 6 dimensions
    same = Emb(torch.zeros(50, 6))
    init_word_embeddings(same, Emb(table))
    assert torch.equal(same.emb.weight, table)
    narrow = Emb(torch.randn(50, 2) * 0.02)
    init_word_embeddings(narrow, Emb(table))
    # two components keep all of a rank-2 table: pairwise distances survive, up to one scale factor
    ratio = torch.pdist(narrow.emb.weight) / torch.pdist(table)
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0].item()), rtol=1e-3, atol=1e-5)
    assert narrow.emb.weight.std().item() == pytest.approx(0.02, rel=0.5)
    with pytest.raises(LmforgeError, match="wider"):
        init_word_embeddings(Emb(torch.zeros(50, 8)), Emb(table))
