"""`mqspn serve`: a trained model over HTTP (FastAPI) with a web page; needs `pip install 'mqspn[serve]'`."""
