"""The manual's rules applied to the store: ``clearance`` (set_step, waive, unwaive, record, the board), the
three-way merge of a returned workbook and its plan (``merge``, ``mergeplan``), what each office's workbook
holds (``issuance``), the certificate desks' 可领证名单 (``certificates``), the 待核对 queue's decisions
(``review``) and the refund queries (``refunds``). It may import manual/, storage/ and feeds/; nothing in core/
imports it — only workbooks/, reports/ and sync/ do.
"""
