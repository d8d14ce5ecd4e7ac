"""Libraries behind binaries that span every stage (the demo)."""
