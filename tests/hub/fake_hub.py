"""A fake Hugging Face hub on disk: every repository the gemma-3-270m-it-L9 preset asks for,
built from the offline model and ../shared/data, in the layouts the hub clients read offline.

- Hub cache (`HF_HUB_CACHE`): `{models,datasets}--owner--name/{blobs,snapshots/<commit>,refs/main}`,
  snapshot files symlinked to content-addressed blobs, as `huggingface_hub` writes them.
- Datasets cache (`HF_DATASETS_CACHE`): what `datasets` 5.2 reads with `HF_HUB_OFFLINE=1`.
  Offline it never opens the hub cache's parquet files: `load_dataset` goes straight to
  `CachedDatasetModuleFactory`, i.e. the Arrow files a previous online load prepared under
  `owner___name/<config>/0.0.0/<commit>/`. We prepare those with the `Parquet` builder an
  online load uses, from the parquet files laid out as in the real repos.

Not faithful, and why:
- model: the offline GGUF is Gemma 3 270M *base*; its weights fill the -it repo (same
  architecture and tokenizer vocabulary). The chat template is Gemma's turn format written
  here (chat_template.jinja). `tokenizer.model` (SentencePiece) is absent: the GGUF has none;
  transformers loads tokenizer.json.
- SAE: d_sae is 2048, not 16384 (sae-lens reads the shapes from params.safetensors), weights
  random (seeded) with per-feature thresholds calibrated on real residuals so that features
  fire 0.1-5% of the time. config.json holds the keys sae-lens reads.
- data: WMDP-bio and MMLU questions from the local copies (same rows); the gated forget corpus
  from OpenStax Biology (its file name `data/train-00000-of-00001.parquet` and columns
  title/abstract/text/doi are not verifiable here: gated); OpenWebText from wikitext lines
  (there is no offline OpenWebText); only the preset's MMLU subjects.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

MODEL_REPO = "google/gemma-3-270m-it"
SAE_REPO = "google/gemma-scope-2-270m-it"
SAE_FOLDER = "resid_post/layer_9_width_16k_l0_medium"
SAE_WIDTH = 2048
SAE_SEED = 0
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
MMLU_SUBJECTS = (
    "high_school_us_history",
    "college_computer_science",
    "high_school_geography",
    "human_aging",
    "college_biology",
)
# Gemma's turn format (as in the gemma-3 -it repos): BOS, a user turn, the model turn opened.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
GITATTRIBUTES = (
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
)


@dataclass(frozen=True)
class FakeHub:
    """Where the fake hub lives and the environment a hub user's process runs with."""

    root: Path

    @property
    def hub_cache(self) -> Path:
        return self.root / "hub"

    @property
    def datasets_cache(self) -> Path:
        return self.root / "datasets"

    def env(self) -> dict[str, str]:
        return {
            "HF_HOME": str(self.root),
            "HF_HUB_CACHE": str(self.hub_cache),
            "HF_DATASETS_CACHE": str(self.datasets_cache),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }


def commit_of(repo_id: str) -> str:
    """A stable 40-hex commit per repo (the real ones are git shas)."""
    return hashlib.sha1(repo_id.encode()).hexdigest()


def put_repo(hub: FakeHub, repo_type: str, repo_id: str, files: dict[str, bytes | Path]) -> Path:
    """Write a repo snapshot into the hub cache; returns the snapshot folder."""
    folder = hub.hub_cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = commit_of(repo_id)
    snapshot = folder / "snapshots" / commit
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        blob = _write_blob(folder / "blobs", content)
        target = snapshot / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def _write_blob(blobs: Path, content: bytes | Path) -> Path:
    if isinstance(content, bytes):
        blob = blobs / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        return blob
    digest = hashlib.sha256()
    with content.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    blob = blobs / digest.hexdigest()
    try:
        os.link(content, blob)  # same file system: no 1 GB copy
    except OSError:
        shutil.copyfile(content, blob)
    return blob


def build_model_repo(hub: FakeHub, model_folder: Path) -> None:
    files: dict[str, bytes | Path] = {name: model_folder / name for name in MODEL_FILES}
    files["chat_template.jinja"] = CHAT_TEMPLATE.encode()
    files[".gitattributes"] = GITATTRIBUTES.encode()
    files["README.md"] = b"---\nlibrary_name: transformers\n---\n# fake gemma-3-270m-it\n"
    put_repo(hub, "model", MODEL_REPO, files)


def jumprelu_params(
    residuals: torch.Tensor, d_sae: int = SAE_WIDTH, seed: int = SAE_SEED
) -> dict[str, torch.Tensor]:
    """Gemma Scope 2's params.safetensors tensors, random (seeded); each threshold is a
    quantile of its feature's pre-activation on `residuals` [tokens, d_model], so the SAE
    fires sparsely on real text."""
    generator = torch.Generator().manual_seed(seed)
    d_model = residuals.shape[-1]
    w_enc = torch.randn(d_model, d_sae, generator=generator) / d_model**0.5
    w_dec = w_enc.T / w_enc.T.norm(dim=-1, keepdim=True)
    b_enc = torch.zeros(d_sae)
    b_dec = torch.zeros(d_model)
    pre = residuals.float() @ w_enc + b_enc
    quantiles = 0.95 + 0.049 * torch.rand(d_sae, generator=generator)
    threshold = torch.stack([pre[:, j].quantile(quantiles[j]) for j in range(d_sae)]).clamp(
        min=1e-3
    )
    return {
        "w_enc": w_enc.contiguous(),
        "w_dec": w_dec.contiguous(),
        "b_enc": b_enc,
        "b_dec": b_dec,
        "threshold": threshold.contiguous(),
    }


def build_sae_repo(hub: FakeHub, params: dict[str, torch.Tensor]) -> None:
    files = {".gitattributes": GITATTRIBUTES.encode()} | sae_folder(SAE_FOLDER, params)
    put_repo(hub, "model", SAE_REPO, files)


def sae_folder(folder: str, params: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """The files of one Gemma Scope 2 SAE folder (`resid_post/layer_<n>_...`) of SAE_REPO."""
    from safetensors.torch import save

    layer = folder.split("layer_")[1].split("_")[0]
    config = {
        "architecture": "jump_relu",
        "model_name": "gemma-v3-270m-it",
        "hf_hook_point_in": f"model.layers.{layer}.output",
        "width": int(params["w_enc"].shape[1]),
        "l0": 53,
    }
    return {
        f"{folder}/config.json": json.dumps(config).encode(),
        f"{folder}/params.safetensors": save(params),
    }


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def put_dataset(
    hub: FakeHub, repo_id: str, configs: dict[str | None, dict[str, tuple[str, pa.Table]]]
) -> None:
    """A dataset repo: {config: {split: (file in repo, table)}} in the hub cache, and the
    Arrow cache `datasets` reads offline, prepared from those files by its Parquet builder."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    files: dict[str, bytes | Path] = {".gitattributes": GITATTRIBUTES.encode()}
    for splits in configs.values():
        files |= {path: _parquet(table) for path, table in splits.values()}
    snapshot = put_repo(hub, "dataset", repo_id, files)
    for config, splits in configs.items():
        builder = Parquet(
            cache_dir=str(hub.datasets_cache / "building"),
            dataset_name=repo_id.split("/")[-1],
            config_name=config or "default",
            hash=commit_of(repo_id),
            data_files={split: [str(snapshot / path)] for split, (path, _) in splits.items()},
        )
        builder.download_and_prepare()
        _place_as_online(hub, repo_id, Path(builder.cache_dir), config or "default")
    shutil.rmtree(hub.datasets_cache / "building")


def _place_as_online(hub: FakeHub, repo_id: str, built: Path, config: str) -> None:
    """Move a prepared dataset where an online load leaves it: `owner___name/<config>/
    <version>/<commit>`, the name snake-cased (a builder given data_files and no repo appends
    a hash to the config and drops the owner)."""
    from datasets.naming import camelcase_to_snakecase

    owner, _, name = repo_id.rpartition("/")
    folder = "___".join(part for part in (owner, camelcase_to_snakecase(name)) if part)
    wanted = hub.datasets_cache / folder / config / built.parent.name / built.name
    wanted.parent.mkdir(parents=True, exist_ok=True)
    built.rename(wanted)
    info_path = wanted / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["config_name"] = config
    info_path.write_text(json.dumps(info))


def build_dataset_repos(hub: FakeHub, data_dir: Path) -> None:
    questions = json.loads((data_dir / "wmdp/bio_questions.json").read_text())
    wmdp = pa.table(
        {
            "answer": [q["answer"] for q in questions],
            "question": [q["question"] for q in questions],
            "choices": [q["choices"] for q in questions],
        }
    )
    put_dataset(
        hub, "cais/wmdp", {"wmdp-bio": {"test": ("wmdp-bio/test-00000-of-00001.parquet", wmdp)}}
    )

    mmlu = {}
    for subject in MMLU_SUBJECTS:
        rows = _mmlu_rows(data_dir / "mmlu/test" / f"{subject}_test.csv")
        table = pa.table(
            {
                "question": [r[0] for r in rows],
                "subject": [subject] * len(rows),
                "choices": [list(r[1:5]) for r in rows],
                "answer": ["ABCD".index(r[5].strip()) for r in rows],
            }
        )
        mmlu[subject] = {"test": (f"{subject}/test-00000-of-00001.parquet", table)}
    put_dataset(hub, "cais/mmlu", mmlu)

    lines = (data_dir / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()
    wiki = pa.table({"text": [line + "\n" for line in lines]})
    put_dataset(
        hub,
        "wikitext",
        {"wikitext-2-raw-v1": {"test": ("wikitext-2-raw-v1/test-00000-of-00001.parquet", wiki)}},
    )
    owt = pa.table({"text": [line for line in lines if line.strip()]})
    put_dataset(
        hub,
        "Skylion007/openwebtext",
        {"plain_text": {"train": ("plain_text/train-00000-of-00080.parquet", owt)}},
    )

    records = [
        json.loads(line)
        for line in (data_dir / "openstax-biology/biology2e_sections.jsonl").open(encoding="utf-8")
    ]
    forget = pa.table(
        {
            "title": [r["title"] for r in records],
            "abstract": [r["text"][:200] for r in records],
            "text": [r["text"] for r in records],
            "doi": [f"10.0000/openstax.{r['section_id']}" for r in records],
        }
    )
    put_dataset(
        hub,
        "cais/wmdp-bio-forget-corpus",
        {None: {"train": ("data/train-00000-of-00001.parquet", forget)}},
    )


def _mmlu_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def build_fake_hub(
    root: Path, model_folder: Path, residuals: torch.Tensor, data_dir: Path
) -> FakeHub:
    """Every repo of the gemma-3-270m-it-L9 preset under `root`."""
    hub = FakeHub(root)
    build_model_repo(hub, model_folder)
    build_sae_repo(hub, jumprelu_params(residuals))
    build_dataset_repos(hub, data_dir)
    return hub


def residual_sample(ws, n_docs: int = 8, tokens: int = 64) -> torch.Tensor:
    """Residuals at the preset's hook (blocks.9.hook_resid_post) of the offline model, which
    has the fake model repo's weights; BOS dropped. [tokens, d_model]."""
    docs = ws.documents("forget_corpus")[:n_docs] + ws.documents("retain_corpus")[:n_docs]
    rows = [ws.tokenizer.encode(doc)[:tokens] for doc in docs]
    rows = [row for row in rows if len(row) == tokens]
    residuals = ws.residual(torch.tensor(rows))[:, 1:]
    return residuals.reshape(-1, residuals.shape[-1]).cpu()


def preset_with_budgets(preset_text: str, rows: int, context_length: int) -> str:
    """The preset's TOML with small budgets and the same sources."""
    out = []
    for line in preset_text.splitlines():
        key = line.split("=")[0].strip()
        if key in ("forget_rows", "retain_rows"):
            line = f"{key} = {rows}"
        elif key == "context_length":
            line = f"context_length = {context_length}"
        elif key == "device":
            line = 'device = "cpu"'
        out.append(line)
    return "\n".join(out) + "\n"
