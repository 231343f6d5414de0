"""One flag style (pipelines/commands/arguments.py): HF TrainingArguments names work as flags and as
overrides, a command's own flags keep their meaning, and a name that is no recipe field is one error
line naming the closest field."""

import subprocess
import sys

import pytest

from pipelines.commands.arguments import normalize
from pipelines.commands.cli import build_parser
from pipelines.config import load_recipe
from pipelines.errors import LmforgeError

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _recipe(argv):
    args = build_parser().parse_args(normalize(argv, build_parser()))
    return args, load_recipe(args.recipe, args.overrides)


def test_hf_names_as_flags_and_overrides_reach_the_recipe():
    _, r = _recipe(["pretrain", "bert-tiny", "--max_steps", "40", "--bf16", "--output_dir", "runs/x",
                    "--learning_rate=3e-4", "per_device_train_batch_size=8", "--max_seq_length", "64",
                    "--optim", "adamw_torch_fused", "training.warmup_steps=2", "--mlm_probability", "0.3"])
    t = r.training
    assert (t.max_steps, t.mixed_precision, t.output_dir, t.learning_rate) == (40, "bf16", "runs/x", 3e-4)
    assert (t.per_device_train_batch_size, t.optimizer, t.warmup_steps) == (8, "adamw", 2)
    assert r.data.max_seq_length == 64 and r.objective["mlm_probability"] == 0.3


@pytest.mark.parametrize("flag, precision", [(["--fp16", "false"], "no"), (["training.bf16=true"], "bf16"),
                                             (["bf16=false"], "no"), (["--bf16=True"], "bf16")])
def test_precision_booleans_are_mixed_precision(flag, precision):
    assert _recipe(["pretrain", "bert-tiny", *flag])[1].training.mixed_precision == precision


def test_a_commands_own_flags_keep_their_meaning():
    args = build_parser().parse_args(normalize(["finetune", "--task", "glue/rte", "--model", "m", "--output_dir", "o",
                                                "--seed", "7", "--num_train_epochs", "2"], build_parser()))
    assert (args.task, args.model, args.output_dir) == ("glue/rte", "m", "o")
    assert args.overrides == ["training.seed=7", "training.num_train_epochs=2"]


@pytest.mark.parametrize("argv, words", [
    (["--max_step", "40"], "'max_step=40': not a recipe field; did you mean 'training.max_steps'?"),
    (["training.learning_rat=1e-3"], "'training.learning_rat=1e-3': section 'training' has no field "
                                     "'learning_rat'; did you mean 'training.learning_rate'?"),
    (["--frobnicate"], "'frobnicate=true': not a recipe field"),
])
def test_unknown_names_name_the_closest_field(argv, words):
    with pytest.raises(LmforgeError) as err:
        normalize(["pretrain", "bert-tiny", *argv], build_parser())
    assert str(err.value) == words


def test_the_cli_refuses_a_typo_in_one_line_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines", "pretrain", "bert-tiny", "--max_step", "40",
                           f"--output_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["lmforge: error: 'max_step=40': not a recipe field; did you mean "
                                                "'training.max_steps'?"]
    assert not any(tmp_path.iterdir())  # nothing was written
