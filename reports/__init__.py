"""HTML and Excel progress reports (built in a later issue)."""
