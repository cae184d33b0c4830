"""Calibration: fitting a step-time model to an engine's measured steps, and replaying it.

The core has no dependency on serve, bench, sim or scenario, so that they can import
it; it builds on perf (StepTimeModel, attention_groups):

- `terms`: what a step time is fitted on (TERMS, term_values), how the engine's
  attention kernels count work (AttentionLayout: padded or varlen), idle_wake;
- `profile`: the profile file (Profile, schema kairos.calibration/v2; v1 files are
  converted on load), load_profile and its one-line errors, MeasuredPoint;
- `fit`: fit_step_time (weighted NNLS) and StepTimeFit;
- `model`: CalibratedModel, the StepTimeModel the simulator runs;
- `machine_speed`: the reference-step readings of a profile and of a run (speed_factor,
  at_speed, SpeedTimeline) and AtMachineSpeed, the StepTimeModel of a replay whose
  machine ran at another speed.

The measuring side is kairos.probes, which drives engines and servers (it imports
serve and bench). The reference step itself (kairos.serve.reference_step) stays in
serve: it is the server's instrument, like its step log, and the server's engine
worker runs it; were it in probes, serve would import the probes that import serve.
"""
