"""The store and its integrity machinery: SQLite through sqlite-utils (``store``: opening, transactions,
students, versioned statuses), its migrations (``schema``), the hash-chained audit log and its replay
(``chain``), the write guard (``guard``), the returns ledger and the 待核对 queue's tables (``ledger``,
``queue``), issued workbooks and deliveries (``registry``), the lenders' confirmations and the 通讯录
(``loanrecords``, ``offices``), the workbook token (``signing``), atomic files, fault points and the paused cycle
collector. It may import manual/ only; feeds/ and clearance/ build on it, and it must not import them.
"""
