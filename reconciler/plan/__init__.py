"""Desired x observed -> Plan: pure functions, tested as golden text."""
