"""Where an intervention's features come from, and the value rule the page and the CLI
share (base × multiplier), without a model."""

import pandas as pd
import pytest

from core.errors import UserError
from core.labels.sets import FeatureSet
from core.selection import sources


def test_ids_typed_with_commas_or_spaces_keep_their_order_once_each():
    chosen = sources.from_ids(" 12, 40 311,12 ")
    assert chosen.features == (12, 40, 311)
    assert chosen.values(20.0) == [20.0, 20.0, 20.0]
    assert chosen.source == "ids"


@pytest.mark.parametrize("text", ["12, forty", "1.5", "3,-"], ids=["word", "float", "dash"])
def test_ids_that_are_not_integers_are_a_user_error(text):
    with pytest.raises(UserError, match="integers separated by commas"):
        sources.from_ids(text)


def test_a_saved_set_brings_its_multipliers():
    saved = FeatureSet("s", features=(5, 9), multipliers=(1.0, 0.5))
    chosen = sources.from_set(saved)
    assert chosen.values(20.0) == [20.0, 10.0]


def test_out_of_range_ids_are_split_off_with_their_multipliers():
    chosen = sources.choice([3, 4096, 7, -1], "ids", [1.0, 2.0, 3.0, 4.0])
    kept, dropped = chosen.within(4096)
    assert kept.features == (3, 7) and kept.multipliers == (1.0, 3.0)
    assert dropped == [4096, -1]


def test_typical_clamp_follows_the_features_own_scale():
    table = pd.DataFrame({"feature": [0, 1, 2, 3], "forget_max_saebench": [0.4, 1.6, 0.8, 0.0]})
    assert sources.typical_clamp(table, [0, 1, 2]) == 1.6  # 2 × median 0.8
    assert sources.typical_clamp(table, [3]) == 1.0  # never fires
