"""The CrossGuard policy pack. Rules live in `policies/rules/`, one per file, so tests can import them offline."""
