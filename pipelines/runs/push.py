"""Upload an exported folder to the Hugging Face Hub (huggingface_hub's upload_folder).

Only complete folders are pushed (a config.json and weights must be there), and only the files an
export is made of (export_files): a stray .env, an optimizer state or a subfolder stays local. They
are staged (hard links) with a generated model card (pipelines/runs/hub_card.py) in
`<export>/../hub/<user>--<name>/`, the exact folder that is uploaded; `dry_run` stops there. The
list is printed before the upload; without network or a token it fails with one line instead of
hanging (every Hub request has a timeout), and the token never appears in what is printed.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
from pathlib import Path

from pipelines.errors import LmforgeError, one_line

# what save_pretrained (model, generation config, tokenizer of any family) and the model card write
EXPORT_NAMES = frozenset({
    "config.json", "generation_config.json", "README.md",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "chat_template.jinja", "chat_template.json",
})
EXPORT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")


def export_files(folder: str | Path) -> tuple[list[str], list[str]]:
    """(files to upload, entries left out) in `folder`: only top-level files of an export."""
    chosen, left = [], []
    for p in sorted(Path(folder).iterdir()):
        ok = p.is_file() and (p.name in EXPORT_NAMES or any(fnmatch.fnmatch(p.name, pat) for pat in EXPORT_PATTERNS))
        (chosen if ok else left).append(p.name if ok or not p.is_dir() else p.name + "/")
    return chosen, left


def _unreachable(exc: BaseException) -> bool:
    """The Hub cannot be reached: offline mode (a ConnectionError) or an httpx transport error."""
    return isinstance(exc, ConnectionError) or any(c.__name__ in ("TransportError", "RequestError")
                                                   for c in type(exc).__mro__)


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        text = text.replace(secret, "***") if secret else text
    return text


def _timeout_s() -> float:
    value = os.environ.get("LMFORGE_HUB_TIMEOUT", "30")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise LmforgeError(f"LMFORGE_HUB_TIMEOUT={value!r}: expected a number of seconds > 0")
    return seconds


def _read_optional(path: Path, required: bool, what: str) -> dict | None:
    from pipelines.runs.report.collect import read_json

    if not path.is_file():
        if required:
            raise LmforgeError(f"push: {path}: no such {what} file")
        return None
    return read_json(path)


def glue_of_run(run: dict | None) -> dict | None:
    """{task: metrics} of a GLUE fine-tuning run's own results (an export fine-tuned on one task)."""
    recipe = (run or {}).get("recipe_config") or {}
    task = (recipe.get("objective") or {}).get("glue_task")
    if not task or (run or {}).get("kind") != "finetune":
        return None
    return {task: {k.removeprefix("eval/"): v for k, v in (run.get("metrics") or {}).items()}}


def downstream_of(folder: Path) -> dict | None:
    """The SQuAD / SWAG / RACE / NER results of the fine-tuning that wrote this export (finetune's
    eval_results.json beside final/), for the card's model-index; None for other exports."""
    from pipelines.runs.report.collect import read_json
    from pipelines.runs.report.downstream import SHOWN

    path = folder.parent / "eval_results.json"
    entry = read_json(path) if path.is_file() else None
    return entry if entry and entry.get("task") in SHOWN else None


def card_inputs(folder: Path, results: dict | str | Path | None, glue: str | Path | None):
    """(run results, GLUE results) for the export's card. Defaults: the run's results.json next to the
    export (runs/NAME/final -> runs/NAME/results.json), and the glue_results.json that
    `finetune --model <export>` writes to its default output folder, else the run's own GLUE task."""
    from pipelines.runs.report.collect import check_glue, check_results
    from pipelines.runs.run_folder import default_output_root

    run = results
    if not isinstance(results, dict):
        path = Path(results) if results is not None else folder.parent / "results.json"
        run = _read_optional(path, results is not None, "results")
        run = check_results(path, run) if run is not None else None
    glue_path = Path(glue) if glue is not None else default_output_root(str(folder)) / "glue_results.json"
    glue_data = _read_optional(glue_path, glue is not None, "GLUE results")
    if glue_data is None and (glue_data := glue_of_run(run)) is not None:
        glue_path = folder.parent / "results.json"
    return run, check_glue(glue_path, glue_data) if glue_data is not None else None


def stage_folder(folder: Path, repo_id: str, files: list[str], card: str) -> Path:
    """The upload as a folder: the export's files (hard links, copies across filesystems) and README.md = card."""
    from pipelines.atomic import atomic_folder

    stage = folder.parent / "hub" / repo_id.replace("/", "--")
    with atomic_folder(stage) as tmp:
        for name in files:
            if name == "README.md":
                continue
            try:
                os.link(folder / name, tmp / name)
            except OSError:
                shutil.copy2(folder / name, tmp / name)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return stage


def _bound_requests(seconds: float) -> None:
    """huggingface_hub's HTTP client waits forever by default (timeout=None): a network that drops packets
    would hang the push. Its shared session gets a timeout instead (Timeout is the client library's class)."""
    from huggingface_hub import get_session

    session = get_session()
    session.timeout = type(session.timeout)(seconds, connect=min(seconds, 10.0))


def push_folder(folder: str | Path, repo_id: str, private: bool = False, commit_message: str = "lmforge export",
                results: dict | str | Path | None = None, glue: str | Path | None = None,
                token: str | None = None, dry_run: bool = False, license: str | None = None) -> str:
    """Stage `folder` with its model card and upload it to `repo_id` (dry_run: stage only). Returns the
    commit URL, or the staged folder for a dry run. The token: `token`, else HF_TOKEN, else a stored login."""
    from pipelines.runs.hub_card import model_card_text

    folder = Path(folder)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        raise LmforgeError(f"push: {folder} is not a complete export (config.json and *.safetensors expected)")
    if repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise LmforgeError(f"push: repo id '{repo_id}' is not of the form user/name")
    files, left = export_files(folder)
    run, glue_results = card_inputs(folder, results, glue)
    stage = stage_folder(folder, repo_id, sorted(set(files) | {"README.md"}),
                         model_card_text(repo_id, folder, run, glue_results, license, downstream_of(folder)))
    files = sorted(p.name for p in stage.iterdir())
    print(f"push: {len(files)} files to {repo_id}: {', '.join(files)}", flush=True)
    if left:
        print(f"push: not uploaded (not part of an export): {', '.join(left)}", flush=True)
    if dry_run:
        print(f"push: dry run: nothing uploaded; the folder and model card are in {stage}", flush=True)
        return str(stage)
    token = token or os.environ.get("HF_TOKEN") or None
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    _bound_requests(_timeout_s())
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(stage), repo_id=repo_id, commit_message=commit_message,
                                 allow_patterns=[glob.escape(f) for f in files])
    except Exception as exc:
        detail = _redact(one_line(exc, None), token, get_token())[:300]  # redacted before it is cut
        if _unreachable(exc):
            raise LmforgeError(f"push to {repo_id}: the Hugging Face Hub cannot be reached ({detail}); nothing was "
                               "uploaded: check the network (and that HF_HUB_OFFLINE is not set), then retry") from None
        if isinstance(exc, (HfHubHTTPError, OSError, ValueError)):
            raise LmforgeError(f"push to {repo_id}: {detail}") from None
        raise
    return str(getattr(info, "commit_url", info))
