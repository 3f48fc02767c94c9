"""Domain rules and the SQLite store of lixiao; imports no spreadsheet, web or CLI library."""
