"""tools/make_training_data.py: measured schedule, decorrelated configurations, reproducible from the seed."""

import importlib.util
import pathlib

import numpy as np
import pytest

from isingcore import io as iio

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "make_training_data.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("make_training_data", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_schedule_and_reproducibility(tmp_path):
    tool = load_tool()
    outs = []
    for name in ("a.h5", "b.h5"):
        out = str(tmp_path / name)
        assert tool.main(["--size", "12", "--configs", "32", "--chains", "4", "--seed", "5", "--pilot", "200",
                          "--out", out]) == 0
        outs.append(out)
    with iio.open_ensemble(outs[0]) as a, iio.open_ensemble(outs[1]) as b:
        assert len(a) == 32
        np.testing.assert_array_equal(a[:], b[:])
        extra = a.attrs["extra"]
        tau = max(extra["tau_E"], extra["tau_m2"])
        assert a.attrs["spacing"] >= 2 * tau
        assert a.attrs["algorithm"] == "wolff"
        assert set(np.unique(a.chain[:])) == {0, 1, 2, 3}
    with pytest.raises(SystemExit):
        tool.main(["--size", "12", "--configs", "30", "--chains", "4", "--out", str(tmp_path / "c.h5")])
