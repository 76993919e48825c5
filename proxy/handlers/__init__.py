"""HTTP handlers: thin, they parse, call the service layer and answer JSON."""
