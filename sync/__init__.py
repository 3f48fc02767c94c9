"""The front doors and the pipeline, in four rooms and a hall. The hall is sync/'s own modules, used by every
room: ``datafolder`` (a data folder found and opened), ``locking`` (the writer and watch locks), ``messages``
(Chinese outcome labels and errors) and ``issuing`` (signed workbooks into outbox/). The rooms: ``takeback``
(one returned file, end to end), ``live`` (the daemon, delivery, mail, shares, the one-shot batch), ``demo`` and
``cli``. Each room may import the rooms named before it and the hall; the hall imports no room.
"""
