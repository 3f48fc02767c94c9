"""The manual's rules, pure: the model (students, steps, checkpoints, statuses), flows and their presets, the
rules of who must do what before what and what the special desk may lift (``rules``), what a ticked or typed
cell means (``marks``), 身份证号 checks and masking (``identity``), roster validation, national loans, and the
status board's figures (``stats``). It imports nothing of lixiao outside this room — no store, no file, no
spreadsheet library — so the manual's rules are tested without files; every other room may import it.
"""
