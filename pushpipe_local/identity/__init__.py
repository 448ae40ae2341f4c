"""The local cloud's OIDC issuer (what Cognito is to a deployed stack)."""
