"""Measuring an engine's steps for a calibration profile (`kairos calibrate`).

The probes drive engines, servers and the simulator (serve, bench, scenario), so they sit
above them; the profile, the fit and the fitted model they write are kairos.calibration's.

- `engine`: in-process probes: a grid of batch shapes stepped on our engine (`kairos calibrate --model`);
- `served`: loads through a `kairos serve` server, fitted on its step log (`kairos calibrate --url`);
- `blackbox`: probes of a server without a step log (vLLM), timed by its /metrics;
- `front_end`: the front-end probe of such a server (idle one-token requests);
- `latency_fit`: the front-end latency of a served profile, from a Poisson phase replayed in the simulator.
"""
