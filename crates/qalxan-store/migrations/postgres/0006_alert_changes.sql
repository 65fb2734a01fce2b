-- The live monitor follows alerts by when they last changed (created, folded, acknowledged,
-- dismissed, merged, promoted): every change stamps updated_at.
CREATE INDEX alerts_updated ON alerts (updated_at);
