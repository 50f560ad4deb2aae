"""HTTP routes: thin handlers that parse, call a service on `app.state` and respond."""
