"""Peer libraries for scenario 6: their virtualenv and one workload script per peer.

``venv.py`` builds a separate virtualenv from ``requirements.txt``; the
``*_workload.py`` scripts run in it as subprocesses (they never import
pgdurable) and print one JSON object of measurements on stdout.
"""
