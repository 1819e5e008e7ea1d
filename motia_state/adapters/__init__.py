"""Built-in backends. Each is imported lazily so that unused drivers are never loaded."""
