"""The step sampler behind --explain keeps a bounded, evenly spread, deterministic sample."""

from kairos.engine.batch_shape import BatchShape
from kairos.sim.explain import StepSampler


def test_sample_stays_bounded_and_spread():
    sampler = StepSampler(limit=4)
    for i in range(1000):
        sampler.offer(float(i), 0, BatchShape(num_decodes=1, decode_kv_sum=i + 1))
    times = [t for t, _, _ in sampler.samples]
    assert 4 <= len(times) <= 8
    assert times[0] == 0.0 and times[-1] > 500
    gaps = {b - a for a, b in zip(times, times[1:])}
    assert len(gaps) == 1  # evenly spaced
