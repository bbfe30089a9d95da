"""The alerting service: alert state machine, router, channels, acknowledgement."""
