"""Episode sampling: determinism, disjoint support/query, small-cell rule, and target exclusion."""

from __future__ import annotations

import logging

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from metasparse.config import CONF_DIR, MetaTrainConfig
from metasparse.data.cells import partition_cells
from metasparse.data.episodes import EpisodeSampler
from metasparse.errors import CellTooSmallError, ConfigValueError


def _cfg(*overrides: str) -> MetaTrainConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose("meta_train", overrides=list(overrides)))


def test_same_seed_same_episodes_other_seed_others(cell_index):
    a = EpisodeSampler(cell_index, cell_index.cells, ["upos", "deprel"], 8, 8, seed=3)
    b = EpisodeSampler(cell_index, cell_index.cells, ["upos", "deprel"], 8, 8, seed=3)
    c = EpisodeSampler(cell_index, cell_index.cells, ["upos", "deprel"], 8, 8, seed=4)
    assert a.take(50) == b.take(50)
    assert a.take(50) != c.take(50)
    assert a.take(5, start=20) == a.take(50)[20:25]  # episode i depends on (seed, i) only: resumable
    assert {e.task for e in a.take(50)} == {"upos", "deprel"}


def test_support_and_query_are_disjoint_and_from_one_cell_and_split(ud_dataset, cell_index):
    sampler = EpisodeSampler(cell_index, cell_index.cells, ["upos"], 16, 16, seed=0)
    for ep in sampler.take(40):
        assert len(ep.support) == 16 and len(ep.query) == 16
        assert not set(ep.support) & set(ep.query)
        rows = ud_dataset.select(list(ep.support + ep.query))
        assert set(rows["split"]) == {"train"}
        assert {(r["lang"], r["domain"], r["treebank"]) for r in rows} == {
            (ep.cell.lang, ep.cell.domain, ep.cell.treebank)
        }


def test_small_cells_skip_with_warning_or_error(cell_index, caplog):
    need = 40
    small = [c for c in cell_index.cells if cell_index.sentences(c, "train") < need]
    assert small  # e.g. lv/legal has 17 train sentences
    with caplog.at_level(logging.WARNING):
        sampler = EpisodeSampler(cell_index, cell_index.cells, ["upos"], 20, 20)
    assert sampler.skipped == sorted(small)
    assert "skipping" in caplog.text and str(small[0]) in caplog.text
    assert not set(e.cell for e in sampler.take(300)) & set(small)
    with pytest.raises(CellTooSmallError, match="lv/legal/Latvian-LVTB"):
        EpisodeSampler(cell_index, cell_index.cells, ["upos"], 20, 20, on_small="error")
    with pytest.raises(ConfigValueError, match="no cell has"):
        EpisodeSampler(cell_index, cell_index.cells, ["upos"], 5000, 5000)


@pytest.mark.parametrize(
    ("overrides", "held_out"),
    [
        (["+domain=legal"], lambda c: c.domain == "legal"),
        (["+language=fi"], lambda c: c.lang == "fi"),
        (["+domain=legal", "+language=fi"], lambda c: c.domain == "legal" or c.lang == "fi"),
    ],
)
def test_targets_never_reach_meta_training(ud_dataset, cell_index, overrides, held_out):
    cfg = _cfg(*overrides)
    domains = [cfg.domain.name] if cfg.domain else []
    languages = [cfg.language.code] if cfg.language else []
    sources, targets = partition_cells(cell_index.cells, domains, languages)
    assert targets and all(held_out(c) for c in targets)
    assert not any(held_out(c) for c in sources)
    assert len(sources) + len(targets) == len(cell_index.cells)
    sampler = EpisodeSampler(
        cell_index, sources, cfg.episodes.tasks, cfg.episodes.shots, cfg.episodes.queries, seed=cfg.seed
    )
    rows = sorted({r for ep in sampler.take(400) for r in ep.support + ep.query})
    sampled = ud_dataset.select(rows)
    for lang, dom in zip(sampled["lang"], sampled["domain"], strict=True):
        assert not (("legal" in domains and dom == "legal") or (lang in languages)), (lang, dom)


def test_legal_targets_are_the_seven_legal_cells(cell_index):
    _, targets = partition_cells(cell_index.cells, ["legal"], [])
    assert sorted(c.lang for c in targets) == ["be", "en", "fi", "hy", "lt", "lv", "ro"]


def test_unknown_domain_or_language_lists_the_available_ones(cell_index):
    with pytest.raises(ConfigValueError, match="available: academic, fiction, legal"):
        partition_cells(cell_index.cells, ["religious"], [])
    with pytest.raises(ConfigValueError, match="available: ar, be, el"):
        partition_cells(cell_index.cells, [], ["xx"])
