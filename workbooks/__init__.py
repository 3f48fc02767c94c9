"""Spreadsheet files in and out: rosters, feeds, issued workbooks and returned workbooks."""
