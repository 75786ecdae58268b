"""Every hub preset checked without the hub: the model is one TransformerLens 3.9 knows, the
SAE is in the installed sae-lens registry at the hook the preset names, each dataset /
config / split / field is the real one (written from the datasets' cards), and the loss text
is streamed: only the documents needed are read."""

import re

import pytest

from core.base.config_files import list_workspaces, load_config
from core.base.paths import PRESETS_DIR
from core.evaluation.loss import LOSS_DOCUMENTS
from core.loading import data

HUB_PRESETS = [
    name
    for name in sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
    if load_config(str(PRESETS_DIR / f"{name}.toml")).model.source == "hub"
]

# From the datasets' cards on the hub (configs, splits, columns).
DATASETS = {
    "cais/wmdp": {
        "configs": {"wmdp-bio", "wmdp-chem", "wmdp-cyber"},
        "splits": {"test"},
        "fields": {"question", "choices", "answer"},
    },
    "cais/mmlu": {  # one config per subject (57) and "all"; the presets' five checked below
        "configs": {
            "high_school_us_history",
            "college_computer_science",
            "high_school_geography",
            "human_aging",
            "college_biology",
        },
        "splits": {"test", "validation", "dev", "auxiliary_train"},
        "fields": {"question", "subject", "choices", "answer"},
    },
    "wikitext": {  # now Salesforce/wikitext; the old id redirects
        "configs": {
            "wikitext-2-raw-v1",
            "wikitext-2-v1",
            "wikitext-103-raw-v1",
            "wikitext-103-v1",
        },
        "splits": {"train", "validation", "test"},
        "fields": {"text"},
    },
    "Skylion007/openwebtext": {
        "configs": {None, "plain_text"},
        "splits": {"train"},
        "fields": {"text"},
    },
    "cais/wmdp-bio-forget-corpus": {  # gated; columns title, abstract, text, doi
        "configs": {None},
        "splits": {"train"},
        "fields": {"text", "title", "abstract", "doi"},
    },
}
QUESTION_FIELDS = {"question", "choices", "answer"}  # what core.loading.data reads


def test_the_hub_presets_are_listed():
    assert set(HUB_PRESETS) == {
        "gemma-2-2b-it-L3",
        "gemma-2-2b-it-L7",
        "gemma-2b-it-L12",
        "gemma-3-270m-it-L9",
    }
    assert set(HUB_PRESETS) < set(list_workspaces())


@pytest.mark.parametrize("name", HUB_PRESETS)
def test_transformer_lens_knows_the_model(name):
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config
    from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES

    cfg = load_config(name)
    assert cfg.model.name in OFFICIAL_MODEL_NAMES
    built_in = get_pretrained_model_config(cfg.model.name)  # Gemma configs: no download
    assert cfg.sae.layer < built_in.n_layers


def registry_hook(release: str, sae_id: str) -> str:
    """The hook sae-lens loads the SAE at: from its own config reader where that reads no
    file from the hub (Gemma Scope), else from the registry's path as its reader does
    (Gemma Scope 2: `resid_post/layer_N_...`; Joseph Bloom's: the id is the hook)."""
    from sae_lens.loading.pretrained_sae_loaders import (
        NAMED_PRETRAINED_SAE_CONFIG_GETTERS,
        get_conversion_loader_name,
    )
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory()[release]
    path = lookup.saes_map[sae_id]
    loader = get_conversion_loader_name(release)
    if loader == "gemma_2":
        getter = NAMED_PRETRAINED_SAE_CONFIG_GETTERS[loader]
        return getter(lookup.repo_id, path, "cpu")["hook_name"]
    if loader == "gemma_3":
        layer = re.search(r"layer_(\d+)", path)
        assert path.startswith("resid_post/") and layer
        return f"blocks.{layer.group(1)}.hook_resid_post"
    hook = re.search(r"blocks\.\d+\.hook_(resid_pre|resid_post|mlp_out|attn_out)", path)
    assert hook, path
    return hook.group(0)


@pytest.mark.parametrize("name", HUB_PRESETS)
def test_the_sae_is_in_the_registry_at_the_presets_hook(name):
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    cfg = load_config(name)
    directory = get_pretrained_saes_directory()
    assert cfg.sae.source == "sae-lens" and cfg.sae.release in directory
    lookup = directory[cfg.sae.release]
    assert cfg.sae.id in lookup.saes_map
    assert registry_hook(cfg.sae.release, cfg.sae.id) == cfg.sae.hook
    base = cfg.model.name.split("/")[-1].removesuffix("-it")
    assert lookup.model.split("/")[-1].removesuffix("-it").removesuffix("-pt") == base


@pytest.mark.parametrize("name", HUB_PRESETS)
def test_the_datasets_are_the_real_ones(name):
    cfg = load_config(name)
    for source in cfg.data:
        assert source.source == "hub", source.role
        card = DATASETS[source.dataset]
        assert source.split in card["splits"], source.role
        for subset in source.subjects or (source.subset,):
            assert subset in card["configs"], (source.role, subset)
        if source.role.endswith("questions"):
            assert card["fields"] >= QUESTION_FIELDS
        else:
            assert source.field in card["fields"], source.role
    assert cfg.source("forget_corpus").gated
    assert set(cfg.source("side_effect_questions").apart) <= set(
        cfg.source("side_effect_questions").subjects
    )


class BudgetedStream:
    """A streaming hub dataset that fails if more than `budget` rows are read from it."""

    def __init__(self, budget: int):
        self.budget, self.read = budget, 0

    def __iter__(self):
        for index in range(10 * self.budget):
            if self.read == self.budget:
                raise AssertionError(f"read past the budget of {self.budget} rows")
            self.read += 1
            yield {"text": f"document {index}: " + "an ordinary sentence of web text. " * 3}


@pytest.mark.parametrize("name", HUB_PRESETS)
def test_the_loss_text_is_streamed_to_its_budget(name, monkeypatch):
    import datasets

    import core.base.hub

    cfg = load_config(name)
    stream = BudgetedStream(LOSS_DOCUMENTS)
    calls = []

    def load_dataset(path, subset=None, split=None, streaming=False):
        calls.append((path, subset, split, streaming))
        if not streaming:
            raise AssertionError(f"{path} would be materialised in full")
        return stream

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(core.base.hub, "hub_problem", lambda: None)
    docs = data.load_documents(cfg, "loss_text", LOSS_DOCUMENTS)
    assert len(docs) == LOSS_DOCUMENTS == stream.read
    source = cfg.source("loss_text")
    assert calls == [(source.dataset, source.subset, source.split, True)]
