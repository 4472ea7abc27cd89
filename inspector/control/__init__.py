"""Control channel (issue 7): validated, acknowledged and audited commands to the running daemon."""
