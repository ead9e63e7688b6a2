"""CLI commands that live in their own modules; engine.cli registers them."""
