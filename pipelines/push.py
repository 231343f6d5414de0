"""Upload an exported folder to the Hugging Face Hub (huggingface_hub's upload_folder).

Only complete folders are pushed (a config.json and weights must be there), and only the files an
export is made of (export_files): a stray .env, an optimizer state or a subfolder stays local. The
list is printed before the upload; without network or a token it fails with one line instead of
hanging.
"""

from __future__ import annotations

import fnmatch
import glob
from pathlib import Path

from pipelines.errors import LmforgeError

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


def push_folder(folder: str | Path, repo_id: str, private: bool = False, commit_message: str = "lmforge export") -> str:
    folder = Path(folder)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        raise LmforgeError(f"push: {folder} is not a complete export (config.json and *.safetensors expected)")
    files, left = export_files(folder)
    print(f"push: {len(files)} files to {repo_id}: {', '.join(files)}", flush=True)
    if left:
        print(f"push: not uploaded (not part of an export): {', '.join(left)}", flush=True)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                                 allow_patterns=[glob.escape(f) for f in files])
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        if _unreachable(exc):
            raise LmforgeError(f"push to {repo_id}: the Hugging Face Hub cannot be reached ({detail}); nothing was "
                               "uploaded: check the network (and that HF_HUB_OFFLINE is not set), then retry") from None
        if isinstance(exc, (HfHubHTTPError, OSError, ValueError)):
            raise LmforgeError(f"push to {repo_id}: {detail}") from None
        raise
    return str(getattr(info, "commit_url", info))
