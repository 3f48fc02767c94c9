"""What other offices' systems send: the library, finance and loan exports read into (step, status, remark)
rows (``exports``), their application to the store like ``lixiao set`` (``apply``, a Clearance mixin), and the
deterministic synthetic cohort of the demo and the benchmarks (``synthetic``). It may import manual/ and
storage/; clearance/ builds on it, and it must not import clearance/.
"""
