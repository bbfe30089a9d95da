"""Sensor simulators: per-domain generators with realistic behaviour and faults, and the MQTT publisher."""
