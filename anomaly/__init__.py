"""Anomaly detection: rules and models score the stream and raise alarms."""
