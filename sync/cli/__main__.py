"""``python -m lixiao.sync.cli``: the same entry point as the ``lixiao`` script."""

from .main import main

main()
