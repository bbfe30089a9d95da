"""The MQTT -> Kafka ingest bridge: subscribe, decode, validate, produce, dead-letter, then acknowledge."""
