"""`relay bench`: measure which pipeline design is better and cheaper on real suites.

- `suite`: load and validate JSONL suites, materialise a case as a git repo.
- `runner`: run cases × configs × repeats (resumable, seeded per pair), hidden tests in the sandbox.
- `executor`: where pairs run (local processes); `ray_executor`: as Ray tasks on a cluster.
- `results`: the results file (one record per pair, written by the driver); `cpu`: CPU per pair.
- `stats`: Wilson and bootstrap intervals, repeats, paired comparison, the oracle, re-pricing.
- `report`: summary.json, report.md, pareto.png, pareto.html.

Submodules are imported on use; importing this package is cheap.
"""
