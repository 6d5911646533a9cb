"""The model's settings that are not in the paper: typed, with their defaults in one place."""

import ml_collections
import pytest

from teco_jax import config_base
from teco_jax.errors import UserError
from teco_jax.models.memory import MemoryConfig
from teco_jax.models.options import Options


def test_a_config_without_the_keys_gets_the_defaults_the_paper_presets_hold():
    paper = config_base.from_file("configs/teco_dmlab.py").model
    assert Options.of(ml_collections.ConfigDict({})) == Options.of(paper) == Options()
    assert not Options().memory.on


def test_values_are_typed_and_checked():
    opts = Options.of(ml_collections.ConfigDict(dict(loss_chunk=4.0, memory=dict(motion="fit", neighbours=3.0))))
    assert opts.loss_chunk == 4 and isinstance(opts.loss_chunk, int)
    assert opts.memory == MemoryConfig(motion="fit", neighbours=3) and opts.memory.on
    with pytest.raises(UserError, match="z_dropout=1.5: it is a probability"):
        Options.of(ml_collections.ConfigDict(dict(z_dropout=1.5)))
    with pytest.raises(UserError, match=r"config.model.memory has unknown keys \['neighbors'\]"):
        MemoryConfig.of(ml_collections.ConfigDict(dict(memory=dict(neighbors=3))))
