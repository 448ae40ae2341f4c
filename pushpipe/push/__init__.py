"""Web Push delivery: encryption (RFC 8291), VAPID (RFC 8292), RFC 8030 delivery."""
