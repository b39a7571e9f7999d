"""The tests, one package per family of sklearn_replearn, mirroring its modules.

Packages (not rootdir-relative modules) so that two families may each have a
``test_estimator.py``; helpers are imported as ``tests._processes``.
"""
