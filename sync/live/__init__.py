"""The live loop: what runs all season — ``daemon`` (``lixiao watch``: events, debouncing, rescans, the writer
lock per batch, coalesced reports), ``loop`` (the shares, the mailbox and fresh generations on their intervals),
``delivery`` (routes, ``lixiao send``, fresh generations), ``mail`` and ``mailmsg`` (SMTP and IMAP, each message
exactly once), ``shares`` (every office's 交回/ polled), ``batch`` (the same sources taken once: ``lixiao sync``,
and what a crash left), ``service`` (systemd unit, heartbeat, health) and ``settings`` ([mail], [delivery]).
It may import takeback/, the hall (sync/'s own modules) and core, workbooks, reports; it must not import cli/
or demo/.
"""
