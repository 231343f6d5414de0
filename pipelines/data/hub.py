"""What the fine-tuning readers share: a fast probe of the Hub for the loaders that take a Hub name
(GLUE, SQuAD, SWAG/RACE, CoNLL, summarization data), and reading one JSON file of a dataset."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached, or None. Without this, huggingface_hub retries a dead network
    for ~25 s (5 backoffs) per file before load_dataset gives up."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # offline mode only reads the local cache and fails within a second
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy decides what is reachable; a direct probe would be wrong
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        return f"{host}:{port} is unreachable ({e})"
    return None


def read_json_file(path, label: str):
    """The parsed JSON of a dataset file; one error line naming `label` and the file when it cannot be read."""
    import json
    from pathlib import Path

    from pipelines.errors import LmforgeError, one_line

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LmforgeError(f"{label} {path}: not a readable JSON file ({one_line(exc, 120)})") from None
