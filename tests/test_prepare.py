"""`prepare`: from a composed config to sources, targets, tokenizer and a source episode sampler."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from metasparse.config import CONF_DIR
from metasparse.data.prepare import prepare


def test_prepare_legal_run_keeps_legal_out_of_tokenizer_and_episodes(ud_dataset):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(
            compose(
                "meta_train",
                overrides=[
                    "+domain=legal",
                    "tokenizer.vocab_size=3000",
                    "tokenizer.sentences_per_language=100",
                ],
            )
        )
    bundle = prepare(cfg)
    assert len(bundle.targets) == 7 and {c.domain for c in bundle.targets} == {"legal"}
    assert "legal" not in {c.domain for c in bundle.sources}
    assert set(bundle.tasks) == {"upos", "deprel"}  # the backbone's heads; episodes use episodes.tasks
    sampler = bundle.sampler(bundle.sources, cfg.episodes, cfg.seed)
    assert "legal" not in {ep.cell.domain for ep in sampler.take(200)}
    assert bundle.tokenizer_path.exists()
    assert prepare(cfg).tokenizer_path == bundle.tokenizer_path  # second run: cache hit
