"""The take-back: one returned file, whatever brought it (inbox/, a named file, a mail attachment, an office's
交回/ folder), from the ledger's first row to the archive and the 回执 — ``pipeline`` (take → check → plan →
merge → dispose), ``checks`` (sandboxed parse, token, baseline), ``inbox`` (what lies in a folder, safe names,
settle waits), ``outcomes`` and ``receipts`` (what the clerk is told), and ``integrity`` (``lixiao verify``:
replay, and the re-merge of returns a crash lost). It may import the hall (sync/'s own modules: datafolder,
locking, messages, issuing) and core, workbooks, reports; it must not import cli/, live/ or demo/, which all
call into it.
"""
