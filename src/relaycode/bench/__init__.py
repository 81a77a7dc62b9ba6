"""`relay bench`: measure which pipeline design is better and cheaper on real suites.

- `suite`: load and validate JSONL suites, materialise a case as a git repo.
- `runner`: run cases × configs (in parallel, resumable), hidden tests in the sandbox.
- `stats`: Wilson intervals, paired comparison, the oracle, re-pricing.
- `report`: summary.json, report.md, pareto.png, pareto.html.

Submodules are imported on use; importing this package is cheap.
"""
