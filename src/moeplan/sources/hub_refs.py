"""What a Hugging Face Hub reference and a GGUF file name say, read without the Hub client: the
planner resolves every model name through `parse_ref` (a catalog id is not a reference), and reads
quant labels and split suffixes of local file names, so these stay out of `hub.py`, whose imports
(huggingface_hub, the header cache) only a Hub read needs.

References (`parse_ref`):
- `hf://org/repo` — a safetensors repository: config.json + every shard's safetensors header;
- `hf://org/repo:Q4_K_M`, `org/repo:Q4_K_M`, `hf://org/repo:sub/file.gguf` — a GGUF repository,
  the file(s) of that quant (case-insensitive, split `-0000N-of-0000M` files and sub-folders);
- `hf://org/repo@revision:...` — at a branch, tag or commit;
- `{HF_ENDPOINT}/org/repo[/blob|resolve/rev/file.gguf]` — a page or file URL *of the configured
  endpoint only*.
Nothing else is fetched: a URL of another host or another scheme is refused (no SSRF through the
web app's model box).
"""

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from moeplan.errors import HubError

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>[0-9]{5})-of-(?P<n>[0-9]{5})\.gguf$", re.IGNORECASE)
# llama.cpp file-type labels as uploaders write them in file names (unsloth's UD- prefix kept).
_QUANT = re.compile(
    r"(?<![A-Z0-9])((?:UD-)?(?:I?Q\d_[A-Z0-9]+(?:_[A-Z0-9]+)*|Q\d_K|TQ\d_0|MXFP4(?:_MOE)?|BF16|F16|F32))"
    r"(?![A-Z0-9])",
    re.IGNORECASE,
)


def endpoint() -> str:
    """The configured Hub endpoint: HF_ENDPOINT (read now, so a test or a mirror set after import
    counts), else huggingface_hub's default."""
    from huggingface_hub import constants  # only for URLs and Hub reads

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class HubRef:
    repo: str
    revision: str | None = None
    target: str | None = None  # a quant label (Q4_K_M) or a file path in the repo

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"hf://{self.repo}{rev}" + (f":{self.target}" if self.target else "")


def _check_repo(repo: str, text: str) -> str:
    if not _REPO.match(repo) or ".." in repo:
        raise HubError(f"'{text}': '{repo}' is not a Hub repository id (expected org/name)")
    return repo


def _from_url(text: str) -> HubRef:
    """A page or file URL of the configured endpoint; anything else is refused."""
    url, base = urlsplit(text), urlsplit(endpoint())
    if url.scheme not in ("http", "https"):
        raise HubError(f"'{text}': only hf://org/repo references are read (scheme '{url.scheme}' refused)")
    if (url.scheme, url.netloc.lower()) != (base.scheme, base.netloc.lower()) or url.query or url.fragment:
        raise HubError(
            f"'{text}': only the configured Hub endpoint {endpoint()} is fetched from; "
            "give hf://org/repo[:QUANT] instead"
        )
    parts = [unquote(p) for p in url.path[len(base.path.rstrip("/")) :].split("/") if p]
    if len(parts) < 2:
        raise HubError(f"'{text}': no org/repo in the URL")
    repo = _check_repo(f"{parts[0]}/{parts[1]}", text)
    if len(parts) >= 5 and parts[2] in ("blob", "resolve"):
        return HubRef(repo, parts[3], "/".join(parts[4:]))
    if len(parts) == 2:
        return HubRef(repo)
    raise HubError(f"'{text}': expected {endpoint()}/org/repo or .../blob/<revision>/<file>")


def parse_ref(text: str) -> HubRef | None:
    """The Hub reference `text` names, or None when it is not one (a catalog id).

    Raises for anything URL-like that is not hf:// or the configured endpoint."""
    s = text.strip()
    if "://" in s:
        if not s.lower().startswith("hf://"):
            return _from_url(s)
        s = s[5:]
        if s.startswith(("models/", "/")):
            s = s.removeprefix("models/").lstrip("/")
    elif not re.match(r"^[^/:\s]+/[^/:\s]+:\S+$", s):
        return None  # catalog ids and `org/repo` names stay with the catalog
    repo_part, _, target = s.partition(":")
    repo_part, _, revision = repo_part.partition("@")
    if repo_part.count("/") != 1:
        raise HubError(f"'{text}': expected hf://org/repo[:QUANT or file]")
    target = target.strip().strip("/")
    if ".." in target.split("/"):
        raise HubError(f"'{text}': '..' is not allowed in a file path")
    return HubRef(_check_repo(repo_part, text), revision or None, target or None)


def quant_label(path: str) -> str:
    found = _QUANT.findall(path.rsplit("/", 1)[-1]) or _QUANT.findall(path)
    return found[-1].upper() if found else ""


def split_parts(path: str) -> tuple[str, int]:
    """A GGUF path without the split suffix gguf-split writes (`-00001-of-00003.gguf`), and the number
    of shards that suffix names; (path, 1) for a single file."""
    m = _SPLIT.match(path)
    return (m.group("stem"), int(m.group("n"))) if m else (path, 1)
