"""Run the Pulumi program with no engine, no credentials and no network, and record what it declares."""
