"""The domain and the store of lixiao, in four rooms: ``manual`` (the manual's rules, pure), ``storage`` (the
SQLite store and its integrity machinery), ``feeds`` (what other offices' systems send) and ``clearance`` (the
rules applied to the store: set, waive, merge, issue). Each may import only the rooms named before it; core/
as a whole imports no spreadsheet, web or CLI library, and nothing in it imports workbooks/, reports/ or sync/.
"""
