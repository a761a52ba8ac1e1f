-- Where a legacy (compat) session was last seen from, as for OAuth and browser sessions.
ALTER TABLE compat_sessions ADD COLUMN last_active_ip TEXT;
