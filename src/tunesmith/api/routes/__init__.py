"""One thin router per resource: validate, call the service, return JSON or an event stream."""
