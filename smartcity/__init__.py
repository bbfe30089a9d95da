"""Command-line entry point and shared configuration of the Laoshan smart-city pipeline."""
