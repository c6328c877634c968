"""Built-in worlds: small, fully synthetic environments where gold quality is known."""
