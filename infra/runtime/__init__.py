"""Deploy-time custom resource handlers (bundled with the functions; no CDK imports)."""
