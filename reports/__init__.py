"""HTML and Excel progress reports: the offline site and 离校进度.xlsx, regenerated after each sync."""
