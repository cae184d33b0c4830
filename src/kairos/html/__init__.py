"""HTML reports: self-contained pages of plotly figures and tables (optional extra `html`)."""
