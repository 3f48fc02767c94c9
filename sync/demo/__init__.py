"""The demo, ``lixiao demo``: ``tour`` runs a whole season on a synthetic cohort through the same functions the
commands use, and ``officesim`` plays the office staff who tick, sort and return workbooks (the benchmarks and
the alignment tests use it too). It may import live/, takeback/, the hall (sync/'s own modules) and core,
workbooks, reports; only cli/ imports it.
"""
