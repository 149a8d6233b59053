"""The transactional outbox: producing events, the relay that delivers them, dead letters."""
