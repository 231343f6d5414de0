"""What both model cards say alike: the pipeline an architecture serves, how a path is named on a
card (never as a local path), the tags of each objective, and the model-index entries (huggingface_hub
EvalResults) of GLUE and the papers' other benchmarks."""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import LmforgeError

PIPELINE_TAGS = (  # architecture name ending -> the transformers pipeline the export serves
    ("ForSequenceClassification", "text-classification"), ("ForQuestionAnswering", "question-answering"),
    ("ForTokenClassification", "token-classification"), ("ForMaskedLM", "fill-mask"), ("ForPreTraining", "fill-mask"),
    ("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
)


def is_local(name: str | None) -> bool:
    return bool(name) and (Path(name).exists() or name.startswith(("/", ".", "~")))


def public_name(name: str | None) -> str | None:
    """A Hub name as it is; a local path as its last part (cards travel, paths do not)."""
    if not name:
        return None
    return f"{Path(name).name} (local)" if is_local(name) else name


def pipeline_tag(architecture: str) -> str | None:
    return next((tag for ending, tag in PIPELINE_TAGS if architecture.endswith(ending)), None)


# tags saying what an objective trains (Hub tags are free text; these are the usual names)
OBJECTIVE_TAGS = {
    "bert-mlm-nsp": ["fill-mask", "masked-language-modeling", "next-sentence-prediction"],
    "mlm": ["fill-mask", "masked-language-modeling"],
    "albert-mlm-sop": ["fill-mask", "masked-language-modeling", "sentence-order-prediction"],
    "electra-rtd": ["replaced-token-detection"],
    "clm": ["causal-language-modeling"],
    "t5-span-corruption": ["span-corruption"],
    "bart-denoising": ["denoising"],
    "glue": ["text-classification", "glue"],
    "glue-t5": ["text2text-generation", "glue"],
    "seq2seq": ["text2text-generation"],
}
HUB_METRICS = {"accuracy": ("accuracy", "Accuracy"), "f1": ("f1", "F1"),
               "matthews_correlation": ("matthews_correlation", "Matthews correlation"),
               "pearson": ("pearsonr", "Pearson correlation"), "spearmanr": ("spearmanr", "Spearman correlation")}


def glue_eval_results(glue: dict) -> list:
    """huggingface_hub EvalResults for every GLUE task and metric (the median where several seeds)."""
    from huggingface_hub import EvalResult

    from pipelines.data.glue import HUB_DATASET
    from pipelines.runs.report.glue import GLUE_TASKS, reported_metrics, task_metrics

    results = []
    for task, entry in glue.items():
        spec = GLUE_TASKS[task]
        for key, value in task_metrics(task, reported_metrics(entry), f"GLUE results: {task}").items():
            split, _, metric = key.rpartition("/")  # MNLI: 'mismatched/accuracy'
            split_name = f"validation_{split}" if split else spec.eval_splits[0]
            metric_type, metric_name = HUB_METRICS.get(metric, (metric, metric))
            results.append(EvalResult(
                task_type="text-classification", task_name="Text Classification", dataset_type=HUB_DATASET,
                dataset_name=f"GLUE {spec.dir_name}", dataset_config=task, dataset_split=split_name,
                metric_type=metric_type, metric_name=f"{metric_name} ({split})" if split else metric_name,
                metric_value=value))
    return results


# the papers' other benchmarks: task -> (Hub task type, task name, Hub dataset, dataset name)
DOWNSTREAM_CARD = {
    "squad": ("question-answering", "Question Answering", "rajpurkar/squad", "SQuAD v1.1"),
    "squad_v2": ("question-answering", "Question Answering", "rajpurkar/squad_v2", "SQuAD v2.0"),
    "swag": ("multiple-choice", "Multiple Choice", "allenai/swag", "SWAG"),
    "race": ("multiple-choice", "Multiple Choice", "ehovy/race", "RACE"),
    "ner": ("token-classification", "Token Classification", "eriktks/conll2003", "CoNLL-2003"),
}


def downstream_eval_results(entry: dict) -> list:
    """huggingface_hub EvalResults of a SQuAD / SWAG / RACE / NER eval_results.json (the median with seeds)."""
    from huggingface_hub import EvalResult

    from pipelines.runs.report.downstream import shown_metrics

    task_type, task_name, dataset, dataset_name = DOWNSTREAM_CARD[entry["task"]]
    values, _ = shown_metrics(entry["task"], entry)
    return [EvalResult(task_type=task_type, task_name=task_name, dataset_type=dataset, dataset_name=dataset_name,
                       dataset_split="validation", metric_type=k, metric_name=k, metric_value=v)
            for k, v in values.items()]


def benchmark_results(recipe, metrics: dict) -> list | None:
    """The model-index entries of a fine-tuning run's own metrics: GLUE or the papers' other benchmarks."""
    o = recipe.objective
    if recipe.task in ("glue", "glue-t5") and o.get("glue_task"):
        from pipelines.runs.report.glue import task_metrics

        try:
            task_metrics(o["glue_task"], metrics, "")
        except LmforgeError:
            return None  # not the task's metrics (a run that stopped before its evaluation)
        return glue_eval_results({o["glue_task"]: metrics})
    squad = "squad_v2" if o.get("version_2_with_negative") else "squad"
    name = {"squad": squad, "squad-t5": squad, "ner": "ner",
            "multiple-choice": o.get("dataset", "swag")}.get(recipe.task)
    return downstream_eval_results({"task": name, **metrics}) if name in DOWNSTREAM_CARD else None
