"""Play inside a trained world model from the browser: `python -m teco_jax.play --checkpoint DIR`.

engine.py: sessions over TECO's KV-cached one-frame step; server.py: the page and its JSON API.
"""
