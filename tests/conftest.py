"""Shared fixtures. The real-PACS rig (Orthanc on free loopback ports) lives in tests/pacs.py."""

pytest_plugins = ["tests.fixtures_common"]
