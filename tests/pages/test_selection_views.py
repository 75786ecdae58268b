"""The search page's frequency scatter: the current set drawn in its colour, the rest in
the other, on a two-colour scale (a colour name per point cost plotly ~0.1 s a rerun)."""

import numpy as np
import pandas as pd

from pages.selection_views import IN_SET, OTHERS, _scatter


def test_points_in_the_current_set_take_its_colour():
    in_set = np.arange(4096) % 7 == 0
    view = pd.DataFrame(
        {
            "feature": np.arange(4096),
            "in_set": in_set,
            "forget_freq": np.linspace(0, 0.1, 4096),
            "retain_freq": np.linspace(0.1, 0, 4096),
        }
    )
    marker = _scatter(view, 1e-5, 0.01).data[0].marker
    assert np.array_equal(np.asarray(marker.color), in_set.astype(int))
    assert [tuple(stop) for stop in marker.colorscale] == [(0, OTHERS), (1, IN_SET)]
    assert (marker.cmin, marker.cmax) == (0, 1)  # 0 and 1 are the scale's two ends
