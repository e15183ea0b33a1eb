"""Guided recording of your own actions (no torch): `python -m edge.record --camera X --mic Y --plan P --out DIR`."""
