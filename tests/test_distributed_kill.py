"""A real Dask worker *process* is SIGKILLed while the cluster runs chains: nothing flushed is lost.

``isingcore sample --scheduler ADDRESS`` runs in a subprocess against a ``distributed.LocalCluster``
of two worker processes started here. While shard 1 is being written, its worker (found with
``client.processing()`` and ``client.run(os.getpid)``) gets SIGKILL. The scheduler re-runs the shard
on a worker (the nanny restarts the dead one); the re-run recovers the shard file of this run to
its last committed configuration and continues it (:func:`isingcore.distributed.run_shard`). The
joined file must hold exactly the serial run's configurations, and the re-run must have resumed
after at least every configuration seen committed before the kill.

The workers' appends are slowed down (a sleep after each ``EnsembleWriter.append``, patched into
the two worker processes with ``client.run``; the restarted worker runs at full speed), so that the
kill lands mid-shard; sleeping changes no random number.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from isingcore.cli import main  # noqa: E402
from isingcore.io import open_ensemble  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings(r"ignore:.*[Pp]ort.*:UserWarning"),
]

CHAINS, CONFIGS = 4, 30
SLOW = 0.15  # seconds of sleep after each append on the original workers (30 appends: 4.5 s per shard)


def _args(out):
    return ["sample", "--size", "16", "--beta", "critical", "--algorithm", "metropolis", "--configs", str(CONFIGS),
            "--spacing", "2", "--thermalize", "10", "--seed", "5", "--chains", str(CHAINS), "--progress", "off",
            "--out", str(out)]


def _load(path):
    with open_ensemble(str(path)) as e:
        ch, st = np.asarray(e.chain), np.asarray(e.step)
        order = np.lexsort((st, ch))
        return ch[order], st[order], np.asarray(e[:])[order], {k: np.asarray(e.observables[k])[order]
                                                               for k in e.observables}


def _throttle(seconds):
    """Runs in a worker process: sleep after every append of an ensemble writer."""
    from isingcore import io as iio

    orig = iio.EnsembleWriter.append
    if getattr(orig, "_throttled", False):
        return os.getpid()

    def append(self, *a, **k):
        n = orig(self, *a, **k)
        time.sleep(seconds)
        return n

    append._throttled = True
    iio.EnsembleWriter.append = append
    return os.getpid()


# The workers cannot import this test module (``tests`` is not on their path when pytest was started
# as ``pytest`` rather than ``python -m pytest``): pickle its functions by value.
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _committed(path):
    try:
        with open_ensemble(str(path)) as e:
            return len(e)
    except Exception:  # not created yet, or caught between two writes: try again
        return 0


def test_sigkill_a_worker_process_mid_shard(tmp_path):
    from distributed import Client, LocalCluster

    serial = tmp_path / "serial.h5"
    assert main(_args(serial)) == 0
    out = tmp_path / "dist.h5"
    shard1 = tmp_path / "dist.shard1-of-2.h5"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        pids = client.run(_throttle, SLOW)  # worker address -> pid
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        driver = subprocess.Popen([sys.executable, "-m", "isingcore", *_args(out), "--scheduler",
                                   cluster.scheduler_address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            # wait until shard 1 has committed a few configurations, then kill the process writing it
            deadline = time.monotonic() + 120
            seen = 0
            while seen < 2 * 5:
                assert time.monotonic() < deadline, "shard 1 never got going"
                assert driver.poll() is None, driver.communicate()
                time.sleep(0.05)
                seen = _committed(shard1)
            victim = next(addr for addr, keys in client.processing().items()
                          if any("shard-1-of-2" in str(k) for k in keys))
            seen = _committed(shard1)
            os.kill(pids[victim], signal.SIGKILL)
            assert seen < 2 * CONFIGS  # killed mid-shard
            stdout, stderr = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
        assert driver.returncode == 0, stderr + stdout
        with pytest.raises(ProcessLookupError):
            os.kill(pids[victim], 0)  # the worker process really died
        now = client.run(os.getpid)
        assert pids[victim] not in now.values()  # (the nanny started a fresh one)
    # the re-run of shard 1 continued after (at least) every configuration committed before the kill
    m = re.search(r"shard dist\.shard1-of-2\.h5: chains 2\.\.3, (\d+) new configuration\(s\) \(resumed after (\d+) "
                  r"per chain; re-run after its worker died\)", stdout)
    assert m, stdout
    new, resumed = int(m.group(1)), int(m.group(2))
    assert 2 * resumed >= seen and new == 2 * (CONFIGS - resumed)
    with open_ensemble(str(shard1)) as e:
        assert len(e) == 2 * CONFIGS and len(e.attrs.get("recoveries", [])) == 1
    # and the joined file is the serial run's, configuration by configuration, none twice
    a, b = _load(serial), _load(out)
    assert len(b[0]) == CHAINS * CONFIGS
    for x, y in zip(a[:3], b[:3]):
        assert np.array_equal(x, y)
    assert a[3].keys() == b[3].keys() and all(np.array_equal(a[3][k], b[3][k]) for k in a[3])
    assert len(set(zip(b[0].tolist(), b[1].tolist()))) == CHAINS * CONFIGS
