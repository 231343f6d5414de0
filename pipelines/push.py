"""Upload an exported folder to the Hugging Face Hub (huggingface_hub's upload_folder).

Only complete folders are pushed (a config.json and weights must be there); without network or
a token it fails with one line instead of hanging.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import LmforgeError


def push_folder(folder: str | Path, repo_id: str, private: bool = False, commit_message: str = "lmforge export") -> str:
    folder = Path(folder)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        raise LmforgeError(f"push: {folder} is not a complete export (config.json and *.safetensors expected)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError, ValueError) as exc:
        raise LmforgeError(f"push to {repo_id}: {' '.join(str(exc).split())[:300]}") from None
    return str(getattr(info, "commit_url", info))
