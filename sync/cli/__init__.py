"""The command line, ``lixiao …``: the click group and the season's commands (``main``), what every command
shares (``base``: errors as one Chinese line, the folder opener with its lock), and one module per family of
commands (feed, offices/send/fetch, records, refunds, review). It may import every other room of sync/ and
every layer below (core, workbooks, reports), each only inside the command that uses it, so that
``lixiao --help`` loads no spreadsheet, store or mail library. Nothing imports it: it is the top of the house.
"""
