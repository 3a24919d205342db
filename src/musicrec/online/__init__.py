"""Online experiments: assignment, interleaving, exploration, definitions, readouts, simulation.

Every served list becomes an experiment unit: a listener is assigned an arm by a salted hash
(:mod:`~musicrec.online.assign`), two arms can be merged by team-draft interleaving
(:mod:`~musicrec.online.interleave`), an arm's list can be sampled Plackett-Luce style with
its propensities logged (:mod:`~musicrec.online.explore`), experiments are defined once in the
event store (:mod:`~musicrec.online.experiments`), and the readout extracts per-arm,
per-listener counts from impressions and the outcomes joined to them
(:mod:`~musicrec.online.readout`), which :mod:`~musicrec.online.report` turns into rates with
intervals, tests and a winner. :mod:`~musicrec.online.guardrails` stops an arm that breaks a
threshold, :mod:`~musicrec.online.replay` estimates a model off-policy from exploration logs,
:mod:`~musicrec.online.metrics` names the per-arm Prometheus metrics, and
:mod:`~musicrec.online.simulate` plays listeners against a running API.
"""
