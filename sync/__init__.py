"""The pipeline and its two front doors: the ``lixiao`` CLI and the watch daemon."""
