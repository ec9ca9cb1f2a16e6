"""The archives of a request: which ones are queried and how (querying.py), and how Weasis authenticates to each
when it downloads the images (access.py)."""
