"""The engine: one tick as a short script of stages (`tick.run_tick`).

Shared, typed pieces: `context` (what a tick needs), `result` (what it reports), `types` (the
values stages hand each other), `timing` (the phase timer), `calculator` (the margin and LTP
reads), `master_book` (the engine's record of the master's orders and positions).
Stages, one module each, never importing one another (an import-linter contract):
`read_master`, `detect`, `plan`, `record`, `propagate`, `size`, `send`, `follow_up`, `converge`.
"""
