"""Lambda function entry points. Each handler is thin: parse, call the domain, shape."""
