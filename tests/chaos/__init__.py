"""Chaos suite (`make chaos`): faults, hostile payloads and security checks against a private stack."""
