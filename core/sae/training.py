"""Train the workspace's own SAE (`python -m core train-sae`) with sae-lens's trainer.

sae-lens's `LanguageModelSAETrainingRunner` streams a hub dataset through a hub model; here
there is neither, so we feed its `SAETrainer` ourselves: residual activations of local
text, computed once up to the SAE's layer and stored in resumable fp16 chunks, then served
in seeded epoch permutations. BOS positions are left out (their norm is ~14x the rest).
The trainer's own machinery does the rest: the TopK forward, AuxK loss for dead latents,
the LR schedule, input-norm scaling (folded into the weights at the end) and checkpoints.

Determinism: the rows, the held-out split, the chunk contents, the init and the batch
order all derive from the seed; a resumed run reloads the optimizer and trainer state and
continues the same batch stream, so it ends where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.base.config import SAETrainingConfig
from core.base.locks import file_lock
from core.base.records import save_array
from core.errors import ConfigError
from core.sae.adapter import fold_decoder_norms
from core.workspace.workspace import Workspace

log = logging.getLogger(__name__)

CHUNK_ROWS = 64
NORM_ESTIMATE_TOKENS = 200_000
MASSIVE_NORM_FACTOR = 4.0
LOG_EVERY_STEPS = 100


def training_rows(ws: Workspace, train: SAETrainingConfig) -> Int[np.ndarray, "rows ctx"]:
    """Token rows from the training documents of the forget and retain corpora, mixed."""
    rows = []
    for role in ("forget_corpus", "retain_corpus"):
        docs, _ = ws.documents_split(role)
        all_rows = ws.token_rows(docs, train.context_length, None, train.seed)
        rows.append(all_rows[: train.max_rows_per_corpus])
    mixed = np.concatenate(rows)
    return mixed[np.random.default_rng(train.seed).permutation(len(mixed))]


class ActivationChunks:
    """Residual activations (BOS dropped) in fp32 chunk files, each written atomically.

    Not fp16: a few tokens (~0.1%, e.g. some spaces late in a row) carry massive
    activations whose largest coordinates overflow fp16.
    """

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.npy"

    def build(self, ws: Workspace, rows: Int[np.ndarray, "rows ctx"], batch_size: int = 16) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        n_chunks = math.ceil(len(rows) / CHUNK_ROWS)
        todo = [i for i in range(n_chunks) if not self.path(i).exists()]
        for done, index in enumerate(todo, start=1):
            chunk_rows = rows[index * CHUNK_ROWS : (index + 1) * CHUNK_ROWS]
            parts = []
            for start in range(0, len(chunk_rows), batch_size):
                resid = ws.residual(torch.from_numpy(chunk_rows[start : start + batch_size]))
                parts.append(resid[:, 1:].reshape(-1, resid.shape[-1]).float().cpu().numpy())
            save_array(self.path(index), np.concatenate(parts))
            log.info("Activations: chunk %d of %d written", done, len(todo))

    def load(self) -> Float[Tensor, "tokens d_in"]:
        files = sorted(self.folder.glob("chunk-*[0-9].npy"))
        return torch.from_numpy(np.concatenate([np.load(path) for path in files]))


def drop_massive_activations(
    acts: Float[Tensor, "tokens d_in"],
) -> tuple[Float[Tensor, "kept d_in"], int]:
    """Leave out tokens whose residual norm exceeds MASSIVE_NORM_FACTOR × the median.

    About 0.1% of tokens (some spaces and punctuation late in a row, like BOS earlier)
    carry 'massive activations' with norms of 20k-90k against a median of ~6.5k. They hold
    two thirds of the variance, so batches that contain them dominate the loss and
    training oscillates instead of converging.
    """
    norms = acts.norm(dim=-1)
    keep = norms < MASSIVE_NORM_FACTOR * norms.median()
    return acts[keep], int((~keep).sum())


def batch_stream(
    acts: Float[Tensor, "tokens d_in"], batch_size: int, seed: int, start_sample: int
) -> Iterator[Float[Tensor, "batch d_in"]]:
    """Batches from seeded per-epoch permutations, starting at sample `start_sample`."""
    n = acts.shape[0]
    position = start_sample
    while True:
        epoch, offset = divmod(position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        take = []
        need = batch_size
        while need:
            piece = order[offset : offset + need]
            take.append(piece)
            need -= len(piece)
            offset += len(piece)
            if offset == n and need:
                epoch, offset = epoch + 1, 0
                order = torch.randperm(
                    n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)
                )
        position += batch_size
        yield acts[torch.cat(take)]


def _latest_checkpoint(folder: Path) -> Path | None:
    steps = [
        (int(match.group(1)), path)
        for path in folder.glob("step-*")
        if (match := re.fullmatch(r"step-(\d+)", path.name))
    ]
    return max(steps)[1] if steps else None


def train_sae(ws: Workspace, fresh: bool = False) -> Path:
    """Train, fold, save in sae-lens format (fp16) at the workspace's SAE path; return it.
    One training runs at a time (a lock beside its work folder): a second waits, then
    resumes from the first one's last checkpoint."""
    cfg = ws.config
    train = cfg.sae.training
    if cfg.sae.source != "trained-here" or train is None:
        raise ConfigError(f"Workspace '{cfg.name}' does not train its own SAE ([sae] source).")
    if train.architecture != "topk":
        raise ConfigError(
            f"[sae.training] architecture {train.architecture!r}: only topk is built."
        )
    work = ws.folder / "sae-training" / ws.training_hash()
    with file_lock(work.with_name(work.name + ".lock"), f"the training of {cfg.sae.path}"):
        return _train(ws, train, work, fresh)


def _train(ws: Workspace, train: SAETrainingConfig, work: Path, fresh: bool) -> Path:
    from sae_lens import SAE
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer
    from safetensors.torch import load_file

    cfg = ws.config
    if fresh:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    chunks = ActivationChunks(work / "activations")
    started = time.perf_counter()
    rows = training_rows(ws, train)
    chunks.build(ws, rows)
    acts, dropped = drop_massive_activations(chunks.load())
    d_in = acts.shape[1]
    log.info("Training on %s activations of width %d", f"{acts.shape[0]:,}", d_in)

    steps = train.epochs * acts.shape[0] // train.batch_size
    torch.manual_seed(train.seed)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=train.d_sae,
            k=train.k,
            dtype="float32",
            device="cpu",
            apply_b_dec_to_input=True,
            normalize_activations="expected_average_only_in",
        )
    )
    trainer = SAETrainer(
        SAETrainerConfig(
            total_training_samples=steps * train.batch_size,
            train_batch_size_samples=train.batch_size,
            lr=train.lr,
            lr_end=train.lr / 10,
            lr_scheduler_name="cosineannealing",
            lr_warm_up_steps=max(1, steps // 20),
            lr_decay_steps=0,
            dead_feature_window=max(10, steps // 20),
            feature_sampling_window=max(10, steps // 10),
        ),
        sae,
        data_provider=iter(()),
    )
    checkpoints = work / "checkpoints"
    latest = None if fresh else _latest_checkpoint(checkpoints)
    if latest is not None:
        sae.load_state_dict(load_file(latest / "sae_weights.safetensors"))
        trainer.load_trainer_state(latest)
        log.info("Resumed from %s", latest)
    else:
        # The residual has a large constant part (a few coordinates sit near ±2000):
        # starting b_dec at the data mean spares Adam thousands of steps to learn it.
        sample = acts[:NORM_ESTIMATE_TOKENS].double()
        scaling_factor = math.sqrt(d_in) / sample.norm(dim=-1).mean().item()
        trainer.activation_scaler.scaling_factor = scaling_factor
        with torch.no_grad():
            sae.b_dec.copy_((sample.mean(0) * scaling_factor).float())

    stream = batch_stream(acts, train.batch_size, train.seed, trainer.n_training_samples)
    while trainer.n_training_steps < steps:
        trainer.maybe_reset_sparsity()
        output = trainer.step(next(stream))
        trainer.n_training_steps += 1
        if trainer.n_training_steps % LOG_EVERY_STEPS == 0 or trainer.n_training_steps == steps:
            losses = ", ".join(f"{k} {float(v):.4f}" for k, v in output.losses.items())
            log.info("Training SAE: step %d of %d (%s)", trainer.n_training_steps, steps, losses)
        if trainer.n_training_steps % train.checkpoint_every_steps == 0:
            name = f"step-{trainer.n_training_steps}"
            trainer.save_checkpoint(name + ".partial", base_path=checkpoints)
            os.replace(checkpoints / (name + ".partial"), checkpoints / name)

    scaling_factor = trainer.activation_scaler.scaling_factor
    assert scaling_factor is not None
    trainer.set_final_sae_metadata()
    sae.save_inference_model(work / "inference-scaled")
    inference = SAE.load_from_disk(work / "inference-scaled", device="cpu")
    fold_decoder_norms(inference)
    inference.fold_activation_norm_scaling_factor(scaling_factor)
    metadata = inference.cfg.metadata
    metadata.model_name = cfg.model.name
    metadata.hook_name = cfg.sae.hook
    metadata.context_size = train.context_length
    metadata.prepend_bos = True
    metadata.dataset_path = "mix: " + ", ".join(
        ws.describe_source(role, portable=True) for role in ("forget_corpus", "retain_corpus")
    )
    metadata.exclude_special_tokens = True
    inference.cfg.dtype = "float16"
    inference.to(torch.float16)

    target = ws.sae_path
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    inference.save_model(partial)
    (partial / "training.json").write_text(
        json.dumps(
            {
                "workspace": cfg.name,
                "command": f"python -m core train-sae --workspace {cfg.name}",
                "training": asdict(train),
                "training_hash": ws.training_hash(),
                "forget_corpus": ws.describe_source("forget_corpus", portable=True),
                "retain_corpus": ws.describe_source("retain_corpus", portable=True),
                "heldout_fraction": cfg.budgets.heldout_fraction,
                "split_seed": cfg.budgets.seed,
                "rows": len(rows),
                "tokens_per_epoch": int(acts.shape[0]),
                "bos": "excluded from training",
                "massive_activations": f"{dropped} tokens with norm > {MASSIVE_NORM_FACTOR} x "
                "median excluded from training",
                "steps": steps,
                "norm_scaling_factor": scaling_factor,
                "activation_units": "input scaled by norm_scaling_factor (mean token norm = "
                "sqrt(d_in)); each decoder row has norm 1/norm_scaling_factor",
                "torch": torch.__version__,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target
